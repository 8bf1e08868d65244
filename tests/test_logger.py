"""utils/logger.py read_scalars: a run folder reads back as TensorBoard shows it, also after a resume."""

from types import SimpleNamespace

from torch.utils.tensorboard import SummaryWriter

from utils.logger import make_writer, read_scalars


def write(run_dir, steps, value, purge_step=None):
    """One SummaryWriter session on run_dir logging `value(step)` at each step, closed afterwards."""
    writer = SummaryWriter(str(run_dir), purge_step=purge_step)
    for step in steps:
        writer.add_scalar("charts/episodic_return", value(step), step)
    writer.close()


def resume(run_dir, steps, value, purge_step):
    """A second session on the same folder, opened the way a resumed script opens it (make_writer), at once."""
    writer = make_writer(run_dir.name, SimpleNamespace(), runs_dir=str(run_dir.parent), purge_step=purge_step)
    for step in steps:
        writer.add_scalar("charts/episodic_return", value(step), step)
    writer.close()


def test_a_single_run_reads_back_every_value_in_order(tmp_path):
    write(tmp_path, range(1, 11), lambda step: step * 0.5)
    assert read_scalars(str(tmp_path)) == {"charts/episodic_return": [(step, step * 0.5) for step in range(1, 11)]}


def test_a_resume_after_a_crash_drops_what_was_logged_after_the_checkpoint(tmp_path):
    write(tmp_path, range(1, 11), float)  # crashed at step 10, its last checkpoint at step 5
    resume(tmp_path, range(6, 9), lambda step: -step, purge_step=6)
    expected = [(step, float(step)) for step in range(1, 6)] + [(step, float(-step)) for step in range(6, 9)]
    assert read_scalars(str(tmp_path)) == {"charts/episodic_return": expected}


def test_a_resume_without_a_crash_continues_the_curve(tmp_path):
    write(tmp_path, range(1, 6), float)  # stopped right after its checkpoint at step 5
    resume(tmp_path, range(6, 9), float, purge_step=6)
    assert len(list(tmp_path.glob("events.out.tfevents*"))) == 2
    assert read_scalars(str(tmp_path)) == {"charts/episodic_return": [(step, float(step)) for step in range(1, 9)]}


def test_a_resumed_writer_opened_in_the_same_second_sorts_after_the_first(tmp_path):
    """Event files are read in name order; the name is the opening second, then a pid and a per-process writer count
    that sort as text (…9 after …10), so a resumed file must start in a later second than every file before it."""
    write(tmp_path, range(1, 3), float)
    resume(tmp_path, range(3, 5), float, purge_step=3)
    first, second = sorted(path.name for path in tmp_path.glob("events.out.tfevents*"))
    assert int(second.split(".")[3]) > int(first.split(".")[3])


def test_an_empty_or_missing_folder_has_no_scalars(tmp_path):
    assert read_scalars(str(tmp_path)) == {}
    assert read_scalars(str(tmp_path / "missing")) == {}

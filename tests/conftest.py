import torch

# Small networks run fastest on one thread, and a second thread stalls when the other core is busy.
torch.set_num_threads(1)

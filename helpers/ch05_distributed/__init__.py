"""Chapter 5, parallel and distributed training: the cost model, sharding memory, the launcher, charts, exercises.

The processes torchrun starts are in jobs/ (python -m torch.distributed.run ... -m helpers.ch05_distributed.jobs.ddp).
"""

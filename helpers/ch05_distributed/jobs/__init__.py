"""The modules torchrun runs in each process (ddp, allreduce, fsdp, resume) and what they share (common).

They import no plotting, images or scikit-learn: every worker process counts in the chapter's memory budget.
"""

"""`python -m training`: the same as `python -m training.train`."""

from training.train import main

main()

"""Multi-state Markov models from panel observations (msm-class maximum likelihood) on the core's CTMC."""

"""The DeepMCAT MONAI Label app's task classes: thin adapters from MONAI Label's interfaces to ``deepmcat``."""

"""A small convolutional net for anneal: its registry entry in `info`, its code in `trainer`."""

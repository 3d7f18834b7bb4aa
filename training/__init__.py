"""The data loop of the operator's own calls: the call store, datasets, training."""

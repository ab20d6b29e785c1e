"""The side-by-side peers of the benchmark: the floor, naive Faust and Quix Streams."""

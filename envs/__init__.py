"""Systems under test for perfkit: the reference arena and the curriculum wrapper."""

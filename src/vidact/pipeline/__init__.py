"""The end-to-end jobs: classify and detect, with their outputs."""

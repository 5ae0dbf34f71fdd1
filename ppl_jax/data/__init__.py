"""Video sources (`base.VideoSource`) and prepared-data builders; see `input_pipeline`."""

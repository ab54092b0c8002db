"""`textclass serve`: an HTTP server with dynamic batching, compatible with TEI and the InferenceClient."""

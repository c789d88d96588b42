"""Benchmarks, load tests and the demo-data generator of the VoP responder."""

"""Reporting, plotting and benchmark scripts: the tables and figures of the README and docs/,
built from the run logs under result/, and the ONNX Runtime speed benchmark."""

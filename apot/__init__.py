"""Quantizer math and training plumbing shared by the CIFAR and ImageNet variants of APoT."""

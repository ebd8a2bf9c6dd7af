"""Naive designs measured in the same run as the real services, for the ratios."""

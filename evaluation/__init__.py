"""Offline evaluation: train / evaluate / fine-tune workflows, rules replayed, ground truth.

It sits above models and alerting and below the command line.
"""

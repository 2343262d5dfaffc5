"""gojob benchmarks: figures and ratios against baselines measured in the same run.

Run with ``python -m benchmarks`` (or ``make bench``). Never timed tests: these print.
"""

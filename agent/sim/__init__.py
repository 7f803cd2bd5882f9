"""The trace-driven simulator: loaders, cluster models, engines, metrics, runner.

from cloudai.agent.sim import load_trace, compare
report = compare(load_trace("lublin_256.swf.gz"), ["fcfs", "sjf"], SimConfig(seed=1))
"""

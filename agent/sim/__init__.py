"""The trace-driven simulator: loaders, cluster models, engines, metrics, runner.

    from cloudai.agent.sim.runner import SimConfig, compare, load_trace
    cfg = SimConfig(seed=1, sequences=10, length=1024)
    report = compare(load_trace("lublin_256.swf.gz"), ["fcfs", "sjf"], cfg)

Modules: trace (loaders), synthetic, machine (one SWF machine), cluster (openb nodes,
per-device GPUs), policies (names), metrics, runner, plots (notebook helpers).
"""

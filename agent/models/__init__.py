"""Model files shipped with the package: `default.joblib`, the learned policy that
`--policy learned` uses without `--model` (and the live agent's), and the per-trace
orderers `lublin.joblib` and `kth.joblib` trained on held-out parts of those traces
(docs/placement-results.md; see cloudai.agent.learn.model)."""

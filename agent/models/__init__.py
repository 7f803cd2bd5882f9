"""Model files shipped with the package: `default.joblib`, the learned policy that
`--policy learned` uses without `--model` (see cloudai.agent.learn.model)."""

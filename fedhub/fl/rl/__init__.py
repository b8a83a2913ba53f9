"""fedhub.fl.rl: federated multi-agent reinforcement learning on graphs.

:mod:`~fedhub.fl.rl.traffic` is the environment (traffic-signal control on a SUMO grid,
one agent per intersection, a dynamic road graph), :mod:`~fedhub.fl.rl.baselines` the
fixed-time and max-pressure controllers. See docs/fl.md, "Traffic RL".
"""

"""Design-space exploration (`metahw explore`): accuracy, latency and resources over (model, bits, lanes).

One job per module: `space` (the parameters and their ranges), `trial` (the three cached
measurements of one design), `cache` (files that are computed once), `objectives` (what is
optimised and in which direction), `executors` (process pool or Ray), `study` (the optuna
ask-and-tell driver with resume), `pareto` (the front, its table and JSON) and `plot`.
"""

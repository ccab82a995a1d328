#!/usr/bin/env python3
"""The Chinchilla parametric fit as Hoffmann et al. and Epoch ran it, in SciPy, for comparison.

The reference side of bench/run-fitting-bench: the same data (Epoch's extraction, 240 rows after
the filter of scaling-laws.md §7), the same objective (Huber, delta = 1e-3, on log-loss residuals,
in the log-sum-exp parameterisation, summed) and the same 4,500-start grid of §3, each start
refined by scipy.optimize.minimize(method="L-BFGS-B") with its default finite-difference gradient,
as Epoch's notebook does. It prints the best start's objective and coefficients, the number of
starts, and the wall and CPU time of the loop over starts, one "key value" per line so that the driver
can read them.

--tolerance default keeps SciPy's default stopping rule (the published procedure). --tolerance
tight asks for the rule that fitting/ uses (scaling-laws.md §1: relative function change 1e-15,
gradient 1e-14, 10,000 iterations), which L-BFGS-B with a finite-difference gradient approaches
as closely as it can; it ends most starts in its line search. --starts K runs every K-th start of
the grid only and reports the time scaled up to the full grid, for a quick look.
"""
import argparse
import csv
import itertools
import time

import numpy as np
from scipy.optimize import minimize

HUBER_DELTA = 1e-3


def load(path):
    """N, D = C / (6N) and L of the rows whose loss is below the 5th-largest (§7's filter)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    n = np.array([float(r["Model Size"]) for r in rows])
    c = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    threshold = np.sort(loss)[::-1][4]
    keep = loss < threshold
    return n[keep], c[keep] / (6 * n[keep]), loss[keep]


def objective(theta, log_n, log_d, log_loss):
    """J = sum_i Huber(LSE(a - alpha ln N, b - beta ln D, e) - ln L), delta = 1e-3."""
    a, b, e, alpha, beta = theta
    t1 = a - alpha * log_n
    t2 = b - beta * log_d
    t3 = np.full_like(log_n, e)
    m = np.maximum(np.maximum(t1, t2), t3)
    predicted = m + np.log(np.exp(t1 - m) + np.exp(t2 - m) + np.exp(t3 - m))
    r = np.abs(predicted - log_loss)
    return float(
        np.sum(np.where(r <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (r - 0.5 * HUBER_DELTA))))


def grid():
    """The 4,500 starts of §3 as (a, b, e, alpha, beta)."""
    alphas = betas = [0.0, 0.5, 1.0, 1.5, 2.0]
    es = [-1.0, -0.5, 0.0, 0.5, 1.0]
    abs_ = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    return [(a, b, e, alpha, beta)
            for a, b, e, beta, alpha in itertools.product(abs_, abs_, es, betas, alphas)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="chinchilla_epoch_svg_extracted.csv")
    parser.add_argument("--tolerance", choices=["default", "tight"], default="default")
    parser.add_argument("--starts", type=int, default=1, metavar="K",
                        help="run every K-th start only (default 1: all 4,500)")
    args = parser.parse_args()

    n, d, loss = load(args.csv)
    data = (np.log(n), np.log(d), np.log(loss))
    options = {}
    if args.tolerance == "tight":
        options = {"ftol": 1e-15, "gtol": 1e-14, "maxiter": 10000, "maxfun": 1000000}
    starts = grid()[::args.starts]

    best = None
    evaluations = 0
    begin = time.perf_counter()
    begin_cpu = time.process_time()
    for start in starts:
        result = minimize(objective, np.array(start), args=data, method="L-BFGS-B",
                          options=options)
        evaluations += result.nfev
        if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
            best = result
    elapsed = time.perf_counter() - begin
    elapsed_cpu = time.process_time() - begin_cpu

    a, b, e, alpha, beta = best.x
    print(f"rows {len(loss)}")
    print(f"starts {len(starts)}")
    print(f"objective_evaluations {evaluations}")
    print(f"seconds {elapsed:.3f}")
    print(f"seconds_full_grid {elapsed * 4500 / len(starts):.3f}")
    print(f"cpu_seconds {elapsed_cpu:.3f}")
    print(f"cpu_seconds_full_grid {elapsed_cpu * 4500 / len(starts):.3f}")
    print(f"J {best.fun:.10f}")
    print(f"A {np.exp(a):.4f}")
    print(f"B {np.exp(b):.4f}")
    print(f"E {np.exp(e):.6f}")
    print(f"alpha {alpha:.6f}")
    print(f"beta {beta:.6f}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""A curve_fit-style data set and SciPy's answer on it, for the linear-residual test of satexp.

Downstream accuracy against validation loss, acc(L) = y_inf + Z exp(-z L), the form of the
saturating exponential with T read as the loss: accuracy falls toward chance (y_inf) as the
loss grows. Twelve losses from 2.2 to 4.0, truth y_inf = 0.25, Z = 8, z = 1.2, plus N(0, 0.01)
noise from numpy's seed 20261204. The published laws of this kind are fitted by ordinary least
squares on accuracy itself, which is what scipy.optimize.curve_fit does (Levenberg-Marquardt on
acc_hat - acc, unweighted). Writes accuracy_vs_loss.csv and accuracy_vs_loss_curve_fit.json
(SciPy's optimum and the square root of the diagonal of its covariance) beside this file.
Run with Debian's python3 and python3-scipy: /usr/bin/python3 tests/testdata/accuracy_vs_loss.py
"""
import json
import os

import numpy as np
import scipy
from scipy.optimize import curve_fit

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261204)
loss = np.linspace(2.2, 4.0, 12)
accuracy = 0.25 + 8.0 * np.exp(-1.2 * loss) + rng.normal(0.0, 0.01, loss.size)


def law(x, y_inf, amplitude, rate):
    return y_inf + amplitude * np.exp(-rate * x)


popt, pcov = curve_fit(law, loss, accuracy, p0=(0.2, 5.0, 1.0))
with open(os.path.join(here, "accuracy_vs_loss.csv"), "w") as out:
    out.write("loss,accuracy\n")
    for x, y in zip(loss, accuracy):
        out.write(f"{x!r},{y!r}\n")
with open(os.path.join(here, "accuracy_vs_loss_curve_fit.json"), "w") as out:
    json.dump({"scipy": scipy.__version__,
               "y_inf": popt[0], "Z": popt[1], "z": popt[2],
               "se": list(np.sqrt(np.diag(pcov))),
               "rss": float(np.sum((law(loss, *popt) - accuracy) ** 2))}, out, indent=1)
print(popt, np.sqrt(np.diag(pcov)))

"""Predictor-guided pruning against uniform and global-magnitude pruning, at equal measured latency.

Task: scikit-learn's digits at 32x32 (edgelat.datasets.digits), trained on 2 cores in a minute.
Network: MobileNetV2 (width 1.0, 10 classes), trained first. Target: half its measured latency on
`local` (1 thread, default recipe). Three ways to get there, all priced by the same device
predictor (the bench workspace, see bench/predictor_accuracy.py) and all given the same number
of fine-tuning steps in total:

- edgelat: NetAdapt-style steps, each removing the channels that buy the step's predicted
  latency at the least lost importance (L2 magnitude), measured and re-aimed on the device;
- uniform: one pruning ratio in every layer (Torch-Pruning's MagnitudePruner, local), bisected
  until the predicted latency meets the same aim;
- magnitude: one global L2-magnitude threshold across layers, bisected likewise.

Reported: measured latency, distance to the target, validation accuracy after fine-tuning.

Usage: python bench/prune_digits.py [--workspace ~/.cache/edgelat-bench] [--speedup 2]
Writes bench/out/prune_digits.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import torch  # noqa: E402
from _workspace import DEFAULT, ensure_trained  # noqa: E402

from edgelat.datasets.digits import DigitsTask, train  # noqa: E402
from edgelat.datasets.zoo import create_model  # noqa: E402
from edgelat.nas.prune import prune_to_latency, uniform_prune  # noqa: E402
from edgelat.ops.network import relax_from_torch  # noqa: E402
from edgelat.predictors.predict import NetworkPricer, load_model  # noqa: E402
from edgelat.profiler.e2e import measure_network  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=DEFAULT)
    parser.add_argument("--model", default="mobilenetv2_100")
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--finetune-steps", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)

    task = DigitsTask(32)
    example = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with open_workspace(args.workspace) as ws:
        ensure_trained(ws)
        pricer = NetworkPricer(load_model(ws, "local"))

        def measure(model: torch.nn.Module) -> float:
            return measure_network(ws, "local", relax_from_torch(model, example), name="bench-prune", per_kernel=False).median_ms

        torch.manual_seed(0)
        model = train(create_model(args.model, num_classes=10), task, args.pretrain_steps)
        base_ms, base_pred, base_acc = measure(model), pricer.network(model, example)[0], task.evaluate(model)
        target = base_ms / args.speedup
        rows = {"baseline": {"measured_ms": base_ms, "predicted_ms": base_pred, "accuracy": base_acc, "seconds": 0.0}}
        start = time.time()
        ours = prune_to_latency(model, example, target, pricer, task=task, measure=measure, steps=args.steps,
                                finetune_steps=args.finetune_steps, baseline_ms=base_ms)  # fmt: skip
        rows["edgelat"] = {"measured_ms": ours.measured_ms, "predicted_ms": ours.predicted_ms, "accuracy": ours.accuracy,
                           "steps": len(ours.steps), "seconds": time.time() - start}  # fmt: skip
        budget = len(ours.steps) * args.finetune_steps  # the same fine-tuning for everyone
        aim = target * base_pred / base_ms * 0.98
        for name, global_magnitude in (("uniform", False), ("magnitude", True)):
            start = time.time()
            pruned, ratio, predicted = uniform_prune(model, example, aim, pricer, global_magnitude=global_magnitude)
            train(pruned, task, budget, lr=0.01)
            rows[name] = {"measured_ms": measure(pruned), "predicted_ms": predicted, "accuracy": task.evaluate(pruned),
                          "ratio": ratio, "seconds": time.time() - start}  # fmt: skip
    report = {
        "model": args.model,
        "task": "digits 32x32",
        "speedup": args.speedup,
        "target_ms": target,
        "finetune_steps_total": budget,
        "rows": rows,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "prune_digits.json").write_text(json.dumps(report, indent=2))
    print(
        f"{args.model} on digits 32x32, local 1 thread: target {target:.3f} ms ({args.speedup:g}x faster than measured), {budget} fine-tune steps each"
    )
    print("| method | measured ms | vs target | predicted ms | accuracy % |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['measured_ms']:.3f} | {100 * (r['measured_ms'] / target - 1):+.1f}% | {r['predicted_ms']:.3f} | {r['accuracy']:.1f} |"
        )


if __name__ == "__main__":
    main()

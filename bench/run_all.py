"""`make bench`: every bench script under bench/, one after another, then bench/results/latest.json and a
markdown table, latest.md. Each script prints its own numbers and saves bench/results/<name>.json."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# engine: the tiny Higgs model on CPU
SCRIPTS = ["pipeline", "incremental", "edit_loop", "stop_latency", "normalize", "scale", "longbook", "engine", "chains"]


def main() -> int:
    results, failed = {}, []
    for name in SCRIPTS:
        print(f"== bench/{name}.py", flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE / f"{name}.py")], cwd=HERE.parent)
        seconds = time.perf_counter() - start
        saved = HERE / "results" / f"{name}.json"
        if done.returncode or not saved.exists():
            failed.append(name)
            results[name] = {"error": f"exit {done.returncode}", "seconds": round(seconds, 1)}
        else:
            results[name] = {**json.loads(saved.read_text()), "bench_seconds": round(seconds, 1)}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "latest.json").write_text(json.dumps(results, indent=2))
    lines = ["| bench | measure | value |", "|---|---|---|"]
    for name, values in results.items():
        lines += [f"| {name} | {key} | {value} |" for key, value in values.items() if key != "machine"]
    machine = next((v.get("machine") for v in results.values() if v.get("machine")), "")
    (HERE / "results" / "latest.md").write_text(f"Machine: {machine}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

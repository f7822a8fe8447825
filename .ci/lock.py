"""`make lock`: resolve what `make install` installs into requirements.lock, the exact versions it pins.

pip resolves, from scratch (ignoring what the virtualenv holds), the project with its dev extra together with
the Makefile's LLM server package, then the Makefile's --no-deps packages alone; every resulting
distribution but the project itself is written as name==version. The Makefile installs with
`pip install -c requirements.lock ...`, so two machines get the same set.

Usage (the Makefile passes its package lists): python .ci/lock.py OUTPUT LLAMA_SPEC -- NO_DEPS_SPEC...
"""

import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def resolve(*args: str) -> dict[str, str]:
    report = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
         *args],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in json.loads(report)["install"]}


def main(argv: list[str]) -> int:
    output, llama, sep, *no_deps = argv
    assert sep == "--", __doc__
    pins = resolve("-e", ".[dev]", llama)
    pins.update(resolve("--no-deps", *no_deps))
    pins.pop("wizchat", None)
    pins["pip"] = subprocess.run([sys.executable, "-m", "pip", "--version"], check=True, capture_output=True,
                                 text=True).stdout.split()[1]
    header = [
        "# Exact versions `make install` installs (pip install -c requirements.lock). Do not edit: `make lock`",
        "# resolves them again from pyproject.toml and the Makefile's LLAMA and NO_DEPS packages.",
        f"# Resolved for {platform.system()} {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version_tuple()[0]}.{platform.python_version_tuple()[1]}.",
    ]
    lines = [f"{name}=={version}" for name, version in sorted(pins.items(), key=lambda kv: kv[0].lower())]
    (ROOT / output).write_text("\n".join(header + lines) + "\n")
    print(f"{output}: {len(lines)} pinned packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The machine a benchmark ran on, as the benchmarks/run_*.sh summaries print it: lscpu's model
name, family, model number and stepping, the CPU count and the SIMD flags (avx*, fma, amx*, f16c)."""
import re
import subprocess


def cpu_info():
    """lscpu's fields as a dict (every flag under "flags", the SIMD ones under "simd")."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    field = lambda k: (re.search(rf"^{k}:\s*(.*)$", text, re.M) or [None, "?"])[1].strip()
    flags = field("Flags").split()
    return {"model": field("Model name"), "family": field("CPU family"), "model_number": field("Model"),
            "stepping": field("Stepping"), "cpus": field(r"CPU\(s\)"), "flags": flags,
            "simd": [f for f in flags if re.match(r"(avx|fma|amx|f16c)", f)]}


def describe(info):
    """One line: "CPU: <model> (family F, model M, stepping S), N CPUs; SIMD flags: …"."""
    return (f"CPU: {info['model']} (family {info['family']}, model {info['model_number']}, stepping {info['stepping']}), "
            f"{info['cpus']} CPUs; SIMD flags: {' '.join(info['simd'])}")

#!/usr/bin/env python3
"""Compare a firehose capture from Warren with the one recorded from RabbitMQ 3.10.8.

usage: compare.py RABBITMQ.json WARREN.json

capture.py runs the same publishes, deliveries and management calls against a broker and writes every
trace copy in a normalised form (header names in order, AMQP type tags, values with ports and node names
masked). Two differences are known and left out of the comparison:
  - fields inside an x-death entry: Warren writes them in name order, RabbitMQ in its own order;
  - routing_keys of a deliver trace: RabbitMQ still lists the BCC keys the message was published with,
    Warren no longer knows them once the BCC header is removed.
"""
import json
import sys


def sort_x_death(v):
    """Sort the fields of every table inside an x-death array."""
    if isinstance(v, list):
        if len(v) == 3 and v[0] == "x-death" and v[1] == "A":
            return [v[0], v[1], [[t, sorted(map(tuple, inner)) if t == "F" else inner] for t, inner in v[2]]]
        return [sort_x_death(x) for x in v]
    if isinstance(v, dict):
        return {k: sort_x_death(x) for k, x in v.items()}
    return v


def normalise(doc):
    for step in doc.get("steps", []):
        for t in step.get("traces", []):
            if isinstance(t, dict) and str(t.get("routing_key", "")).startswith("deliver."):
                t["headers"] = [h for h in t.get("headers", []) if h[0] != "routing_keys"]
    return sort_x_death(doc)


def diff(a, b, path, out):
    if type(a) is not type(b):
        out.append(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'rabbitmq' if k in a else 'warren'}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items != {len(b)} items: {json.dumps(a)[:300]} vs {json.dumps(b)[:300]}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")


def main():
    rabbit, warren = (normalise(json.load(open(p))) for p in sys.argv[1:3])
    out = []
    diff(rabbit, warren, "$", out)
    for line in out[:60]:
        print(line)
    steps = len(rabbit.get("steps", []))
    print(f"firehose: {steps} steps compared, {len(out)} differences")
    sys.exit(1 if out else 0)


if __name__ == "__main__":
    main()

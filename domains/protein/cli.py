"""The protein domain's commands: ``stochgen design`` and ``stochgen ensemble``.

(Training an ensemble model is the generic ``stochgen train protein ENSEMBLE.pdb --out m.ckpt``.)
"""
from __future__ import annotations

import argparse
import csv
import io
import os

__all__ = ["add_verbs", "run_design", "run_ensemble"]

_DESIGN = ("Segment co-design: generate the backbone and sequence of a segment of a chain (4-16 residues, at least "
           "one fixed residue on each side), the rest of the structure held fixed. Writes N PDB files "
           "(design_001.pdb, ...) and designs.csv (sequence, segment sequence, CA-CA deviation, closest contact, "
           "validity, CA-RMSD to the input's segment) to OUT_DIR. Without --model the shipped default model is used.")
_ENSEMBLE = ("Draw N conformations from an ensemble model (trained with: stochgen train protein ENSEMBLE.pdb "
             "--out m.ckpt) and write them as one multi-model PDB (or mmCIF) file.")


def add_verbs(subparsers) -> None:
    """Add ``design`` and ``ensemble`` to ``subparsers``."""
    from stochgen.cli import positive_int, seed_int, verb_parser

    p = verb_parser(subparsers, "design", help="co-design a protein segment's backbone and sequence",
                    description=_DESIGN)
    p.add_argument("input", metavar="INPUT.pdb", help="the structure (.pdb / .cif, optionally .gz)")
    p.add_argument("--segment", required=True, metavar="CHAIN:START-END", help="residues to design, e.g. A:45-56")
    p.add_argument("--model", metavar="CKPT", default=None, help="a design model (default: the shipped one)")
    p.add_argument("-n", type=positive_int, default=10, help="number of designs")
    p.add_argument("-o", "--out", metavar="OUT_DIR", required=True, help="folder for the PDB files and designs.csv")
    p.add_argument("--mode", choices=("joint", "sequence", "structure"), default="joint",
                   help="joint: backbone and sequence; sequence: for the input's backbone; structure: for its sequence")
    p.add_argument("--steps", type=positive_int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the sampler")
    p.add_argument("--temperature", type=float, default=0.1,
                   help="of the amino-acid distributions (0.1: near the most likely; 1: the model's own, diverse)")
    p.add_argument("--no-close", action="store_true", help="skip the CA-CA closure of the designed segment")
    p.set_defaults(func=run_design)

    e = verb_parser(subparsers, "ensemble", help="draw conformations from a protein ensemble model",
                    description=_ENSEMBLE)
    e.add_argument("ckpt", metavar="CKPT", help="an ensemble checkpoint")
    e.add_argument("-n", type=positive_int, default=10, help="number of conformations")
    e.add_argument("-o", "--output", metavar="OUT.pdb", required=True, help="multi-model .pdb or .cif")
    e.add_argument("--steps", type=positive_int, default=None, help="sampler steps (default: the model's)")
    e.add_argument("--seed", type=seed_int, default=0, help="seed of the sampler")
    e.set_defaults(func=run_ensemble)


def run_design(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    import stochgen
    from stochgen.checkpoint import write_atomic
    from stochgen.cli import CLIError

    from .structure import write_structure

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(f"-o {args.out}: exists and is not a folder")
    if args.model is not None and not os.path.exists(args.model):
        raise CLIError(f"--model {args.model}: no such checkpoint")
    dom = stochgen.domain("protein")
    try:
        designs = dom.design(args.input, segment=args.segment, n=args.n, model=args.model, mode=args.mode,
                             steps=args.steps, seed=args.seed, close=not args.no_close,
                             temperature=args.temperature)
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for i, d in enumerate(tqdm(designs, desc="writing designs", unit="pdb", disable=len(designs) < 20)):
        name = f"design_{i + 1:03d}.pdb"
        write_structure(os.path.join(args.out, name), d["backbone"], title=f"stochgen design {i + 1}")
        rows.append({"file": name, "segment": args.segment, "segment_sequence": d["segment_sequence"],
                     "sequence": d["sequence"], "ca_ca_max_dev": f"{d['ca_ca_max_dev']:.3f}",
                     "min_contact": f"{d['min_contact']:.2f}", "valid": int(d["valid"]),
                     "rmsd_to_input": f"{d['rmsd_to_input']:.2f}"})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path = os.path.join(args.out, "designs.csv")
    write_atomic(path, lambda tmp: open(tmp, "w").write(buf.getvalue()))
    valid = sum(r["valid"] for r in rows)
    print(f"wrote {len(rows)} designs of {args.segment} to {args.out} ({valid}/{len(rows)} with valid geometry); "
          f"scores in {path}")
    for r in rows[:5]:
        print(f"  {r['file']}  {r['segment_sequence']}  CA-RMSD to input {r['rmsd_to_input']} A  valid {r['valid']}")
    return 0


def run_ensemble(args: argparse.Namespace) -> int:
    import stochgen
    from stochgen.cli import CLIError, check_output

    from .structure import STRUCTURE_SUFFIXES, write_structure

    if not os.path.exists(args.ckpt):
        raise CLIError(f"{args.ckpt}: no such checkpoint")
    if not args.output.lower().endswith(STRUCTURE_SUFFIXES):
        raise CLIError(f"-o {args.output}: write a .pdb or .cif file")
    check_output(args.output, "ensemble")
    try:
        models = stochgen.domain("protein").ensemble(args.ckpt, n=args.n, steps=args.steps, seed=args.seed)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    write_structure(args.output, [[m] for m in models], title="stochgen ensemble")
    print(f"wrote {len(models)} conformations of {len(models[0])} residues to {args.output}")
    return 0

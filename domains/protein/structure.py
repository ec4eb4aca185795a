"""Protein backbones in and out of PDB / mmCIF files (gemmi), and the amino-acid alphabet.

* :class:`Backbone`: one chain's backbone -- ``coords`` ``(L, 4, 3)`` float64 of the atoms N, CA,
  C, O per residue (Angstrom), ``sequence`` (one letter per residue, the 20 standard amino acids),
  residue numbers ``resnums`` and insertion codes, the chain name and the file it came from.
* :func:`read_chains`: every protein chain of one model of a ``.pdb`` / ``.cif`` / ``.mmcif`` file
  (optionally ``.gz``); :func:`read_models`: one chain in every model of a multi-model file (NMR
  ensembles, trajectories written as PDB); :func:`read_trajectory`: one chain in every frame of a
  trajectory (``.dcd``, ``.xtc``, ...) with its topology, through mdtraj.
* :func:`write_structure`: backbones (one model) or a list of models back to PDB / mmCIF,
  atomically (a temporary file renamed over the target), coordinates at the format's precision.

The 20 standard residues are read; selenomethionine (MSE) reads as M. Waters and ligands (no
backbone atoms, not in the polymer) are skipped. Any other residue name inside a chain's polymer
is an error naming it, the residue and the file; so is a chain without any residue with N, CA
and C, an empty or unreadable file, and a missing one (``FileNotFoundError``). A residue without
one of N, CA, C is dropped with a warning naming it; a missing O is placed from the backbone
(:func:`domains.protein.frames.place_oxygens`).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from stochgen.checkpoint import write_atomic

__all__ = ["AMINO_ACIDS", "THREE_LETTER", "Backbone", "read_chains", "read_models", "read_trajectory",
           "write_structure", "encode_sequence", "decode_sequence", "STRUCTURE_SUFFIXES"]

#: the 20 standard amino acids, in the order of their token indices 0..19
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
THREE_LETTER = {"A": "ALA", "C": "CYS", "D": "ASP", "E": "GLU", "F": "PHE", "G": "GLY", "H": "HIS", "I": "ILE",
                "K": "LYS", "L": "LEU", "M": "MET", "N": "ASN", "P": "PRO", "Q": "GLN", "R": "ARG", "S": "SER",
                "T": "THR", "V": "VAL", "W": "TRP", "Y": "TYR"}
_ONE_LETTER = {v: k for k, v in THREE_LETTER.items()}
_ONE_LETTER.update({"MSE": "M", "HSD": "H", "HSE": "H", "HSP": "H", "HIE": "H", "HID": "H", "HIP": "H",
                    "CYX": "C", "CYM": "C", "ASH": "D", "GLH": "E", "LYN": "K"})  # MD force-field names
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
BACKBONE_ATOMS = ("N", "CA", "C", "O")
_PROTEIN_EXTRA = 'pip install -e ".[protein]"'


def _gemmi():
    try:
        import gemmi
    except ImportError:
        raise ImportError(f"reading and writing protein structures needs gemmi: {_PROTEIN_EXTRA} "
                          "(or pip install gemmi)") from None
    return gemmi


def encode_sequence(seq: str, what: str = "sequence") -> np.ndarray:
    """One-letter sequence -> token indices ``(L,)`` int64 in ``0..19``; other letters are an error."""
    seq = str(seq).upper()
    bad = sorted({c for c in seq if c not in AMINO_ACIDS})
    if bad:
        raise ValueError(f"{what}: unknown amino-acid letter(s) {bad}; the alphabet is {AMINO_ACIDS}")
    return np.array([AMINO_ACIDS.index(c) for c in seq], dtype=np.int64)


def decode_sequence(tokens) -> str:
    """Token indices ``0..19`` -> one-letter sequence."""
    tokens = np.asarray(tokens).reshape(-1)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= len(AMINO_ACIDS)):
        raise ValueError(f"amino-acid tokens must lie in 0..{len(AMINO_ACIDS) - 1}, got {tokens.min()}..{tokens.max()}")
    return "".join(AMINO_ACIDS[int(i)] for i in tokens)


@dataclass
class Backbone:
    """One chain's backbone atoms ``coords (L, 4, 3)`` (N, CA, C, O), its sequence and residue numbering."""

    coords: np.ndarray
    sequence: str
    chain: str = "A"
    resnums: np.ndarray | None = None
    icodes: list = field(default_factory=list)
    source: str = ""

    def __post_init__(self):
        c = np.asarray(self.coords, dtype=np.float64)
        if c.ndim != 3 or c.shape[1:] != (4, 3):
            raise ValueError(f"backbone coords must have shape (L, 4, 3) (N, CA, C, O per residue), got {c.shape}")
        if not np.isfinite(c).all():
            raise ValueError("backbone coords hold NaN or infinite values")
        self.coords = c
        if len(self.sequence) != len(c):
            raise ValueError(f"the sequence has {len(self.sequence)} letters for {len(c)} residues")
        encode_sequence(self.sequence, "backbone sequence")
        if self.resnums is None:
            self.resnums = np.arange(1, len(c) + 1)
        self.resnums = np.asarray(self.resnums, dtype=np.int64)
        if len(self.resnums) != len(c):
            raise ValueError(f"{len(self.resnums)} residue numbers for {len(c)} residues")
        if not self.icodes:
            self.icodes = [" "] * len(c)

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def ca(self) -> np.ndarray:
        return self.coords[:, 1]

    def index_of(self, resnum: int, icode: str = " ") -> int:
        """Position (0-based) of residue number ``resnum``; a ``ValueError`` when the chain has none."""
        hits = np.flatnonzero((self.resnums == int(resnum)) & (np.array(self.icodes) == (icode or " ")))
        if not len(hits):
            raise ValueError(f"chain {self.chain} of {self.source or 'the structure'} has no residue {resnum}"
                             f"{(icode or '').strip()} (its residues run {self.resnums[0]}..{self.resnums[-1]})")
        return int(hits[0])

    def replace(self, coords=None, sequence=None) -> "Backbone":
        return Backbone(self.coords if coords is None else coords, self.sequence if sequence is None else sequence,
                        self.chain, self.resnums.copy(), list(self.icodes), self.source)


def _check_file(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"structure file {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder; give a .pdb or .cif file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"structure file {path!r} is empty")
    base = path[:-3] if path.lower().endswith(".gz") else path
    if not base.lower().endswith(STRUCTURE_SUFFIXES):
        raise ValueError(f"{path!r}: unsupported structure format; give one of {', '.join(STRUCTURE_SUFFIXES)} "
                         "(optionally .gz)")
    return path


def _read(path):
    gemmi = _gemmi()
    path = _check_file(path)
    try:
        st = gemmi.read_structure(path)
    except Exception as exc:  # gemmi raises RuntimeError / ValueError with its own message
        raise ValueError(f"cannot read structure file {path!r}: {exc}") from None
    if len(st) == 0:
        raise ValueError(f"structure file {path!r} holds no atoms (no model)")
    st.setup_entities()
    return st, path


def _model_id(m) -> str:
    return str(getattr(m, "num", getattr(m, "name", "?")))


def _chain_backbone(chain, path: str, model_name: str):
    from .frames import place_oxygens

    coords, seq, nums, icodes, dropped = [], [], [], [], []
    for res in chain:
        atoms = {a.name: a for a in res}
        has_bb = all(k in atoms for k in ("N", "CA", "C"))
        letter = _ONE_LETTER.get(res.name)
        if letter is None:
            if not has_bb or res.het_flag == "H" and res.name in ("HOH", "WAT"):
                continue  # water, ion, ligand
            raise ValueError(f"{path}: chain {chain.name} residue {res.name} {res.seqid.num}{res.seqid.icode.strip()} "
                             f"is not one of the 20 standard amino acids (nor MSE); replace or remove it")
        if not has_bb:
            dropped.append(f"{res.name}{res.seqid.num}")
            continue
        xyz = np.full((4, 3), np.nan)
        for j, k in enumerate(BACKBONE_ATOMS):
            if k in atoms:
                p = atoms[k].pos
                xyz[j] = (p.x, p.y, p.z)
        coords.append(xyz)
        seq.append(letter)
        nums.append(res.seqid.num)
        icodes.append(res.seqid.icode or " ")
    if dropped:
        warnings.warn(f"{path}: chain {chain.name} (model {model_name}): dropped {len(dropped)} residue(s) without all "
                      f"of N, CA, C: {', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}", stacklevel=3)
    if not coords:
        return None
    coords = np.stack(coords)
    missing_o = np.isnan(coords[:, 3]).any(-1)
    if missing_o.any():
        coords[missing_o, 3] = place_oxygens(coords[:, :3])[missing_o]
    return Backbone(coords, "".join(seq), chain.name, np.array(nums), icodes, path)


def _model_chains(st, i: int, chain: str | None, path: str) -> list[Backbone]:
    """The protein chains (or chain ``chain``) of model ``i`` of a read structure; errors name the file."""
    m = st[i]
    names = [c.name for c in m]
    if chain is not None and chain not in names:
        raise ValueError(f"{path}: model {i + 1} has no chain {chain!r} "
                         f"(chains: {', '.join(dict.fromkeys(names)) or 'none'})")
    out = [bb for c in m if chain is None or c.name == chain
           for bb in [_chain_backbone(c, path, _model_id(m))] if bb is not None]
    if not out:
        what = f"chain {chain}" if chain is not None else "any chain"
        raise ValueError(f"{path}: {what} has no amino-acid residue with backbone atoms N, CA, C")
    return out


def read_chains(path, chain: str | None = None, model: int = 0) -> list[Backbone]:
    """The protein chains of model ``model`` (0-based) of a structure file; ``chain`` picks one by name."""
    st, path = _read(path)
    if not 0 <= int(model) < len(st):
        raise ValueError(f"{path}: model {model} does not exist (the file has {len(st)} model(s))")
    return _model_chains(st, int(model), chain, path)


def read_models(path, chain: str | None = None) -> list[Backbone]:
    """One chain (the first protein chain, or ``chain``) in every model of a multi-model file.

    Every model must hold the same residues (numbers and sequence); otherwise a ``ValueError``
    names the first model that differs."""
    st, path = _read(path)
    out = []
    for i in range(len(st)):
        bb = _model_chains(st, i, chain, path)[0]
        if out and (bb.sequence != out[0].sequence or not np.array_equal(bb.resnums, out[0].resnums)):
            raise ValueError(f"{path}: model {i + 1} holds other residues than model 1 "
                             f"({len(bb)} vs {len(out[0])} residues); an ensemble needs the same chain in every model")
        out.append(bb)
    return out


def read_trajectory(path, topology, chain: int = 0, stride: int = 1) -> list[Backbone]:
    """Backbones of protein chain ``chain`` (0-based index) in every ``stride``-th frame of a trajectory
    (any format mdtraj reads: .dcd, .xtc, .trr, .nc, ...) with its topology (.pdb, .psf, .gro, ...)."""
    try:
        import mdtraj
    except ImportError:
        raise ImportError(f"reading trajectories needs mdtraj: {_PROTEIN_EXTRA} (or pip install mdtraj)") from None
    for p in (path, topology):
        if not os.path.exists(os.fspath(p)):
            raise FileNotFoundError(f"trajectory file {os.fspath(p)!r} does not exist")
    try:
        traj = mdtraj.load(os.fspath(path), top=os.fspath(topology), stride=int(stride))
    except Exception as exc:
        raise ValueError(f"cannot read trajectory {os.fspath(path)!r} with topology {os.fspath(topology)!r}: "
                         f"{exc}") from None
    top = traj.topology
    chains = [c for c in top.chains if any(r.is_protein for r in c.residues)]
    if not 0 <= chain < len(chains):
        raise ValueError(f"{path}: protein chain {chain} does not exist ({len(chains)} protein chain(s))")
    idx, seq, nums = [], [], []
    for r in chains[chain].residues:
        letter = _ONE_LETTER.get(r.name)
        atoms = {a.name: a.index for a in r.atoms}
        if letter is None or not all(k in atoms for k in ("N", "CA", "C")):
            continue
        o = atoms.get("O", atoms.get("OT1", atoms.get("OC1", atoms["C"])))
        idx.append([atoms["N"], atoms["CA"], atoms["C"], o])
        seq.append(letter)
        nums.append(r.resSeq)
    if not idx:
        raise ValueError(f"{path}: the chain has no amino-acid residue with backbone atoms N, CA, C")
    xyz = traj.xyz[:, np.array(idx)] * 10.0  # nm -> Angstrom
    return [Backbone(x.astype(np.float64), "".join(seq), "A", np.array(nums), [], os.fspath(path)) for x in xyz]


def _build_model(gemmi, chains, number: int):
    model = gemmi.Model(number) if _model_takes_int(gemmi) else gemmi.Model(str(number))
    for bb in chains:
        ch = gemmi.Chain(bb.chain or "A")
        for i in range(len(bb)):
            res = gemmi.Residue()
            res.name = THREE_LETTER[bb.sequence[i]]
            res.seqid = gemmi.SeqId(int(bb.resnums[i]), (bb.icodes[i] or " ")[0])
            res.entity_type = gemmi.EntityType.Polymer
            for j, name in enumerate(BACKBONE_ATOMS):
                a = gemmi.Atom()
                a.name = name
                a.element = gemmi.Element(name[0])
                a.pos = gemmi.Position(*map(float, bb.coords[i, j]))
                a.occ = 1.0
                a.b_iso = 0.0
                res.add_atom(a)
            ch.add_residue(res)
        model.add_chain(ch)
    return model


def _model_takes_int(gemmi) -> bool:
    try:
        gemmi.Model(1)
        return True
    except TypeError:
        return False


def write_structure(path, chains, title: str | None = None) -> str:
    """Write backbones (N, CA, C, O) to ``path`` (``.pdb`` or ``.cif``), atomically.

    ``chains``: a :class:`Backbone`, a list of them (one model), or a list of lists (one model
    each, written as MODEL records / mmCIF model numbers)."""
    gemmi = _gemmi()
    path = os.fspath(path)
    if not path.lower().endswith(STRUCTURE_SUFFIXES):
        raise ValueError(f"{path!r}: write a {' or '.join(STRUCTURE_SUFFIXES)} file")
    if isinstance(chains, Backbone):
        chains = [chains]
    models = chains if chains and isinstance(chains[0], (list, tuple)) else [chains]
    if not models or not all(models):
        raise ValueError("nothing to write: give at least one backbone")
    st = gemmi.Structure()
    st.name = (title or "stochgen")[:40]
    for i, m in enumerate(models):
        st.add_model(_build_model(gemmi, m, i + 1))
    st.setup_entities()
    cif = path.lower().endswith((".cif", ".mmcif"))

    def write(tmp):
        if cif:
            st.make_mmcif_document().write_file(tmp)
        else:
            st.write_pdb(tmp)

    return write_atomic(path, write)

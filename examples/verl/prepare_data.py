"""Write verl's parquet files for esc-env episodes (one row per persona and seed).

Each row's prompt is a system message and the seeker's opening, written by the same seeker
that ``ESCInteraction`` runs (so the policy sees exactly the episode's opening), and its
``extra_info.interaction_kwargs`` names the interaction, the persona, the seed and the opening.

    python examples/verl/prepare_data.py --out-dir data/esc_verl --seeds 0 1 2 3 --val-personas 2

reads the interaction's config from ``examples/verl/esc_interaction.yaml`` (``--config``), and
writes ``train.parquet`` (all personas but the last ``--val-personas``) and ``val.parquet``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from esc_env.integrations.verl_interaction import dataset_rows

HERE = Path(__file__).resolve().parent


def interaction_config(path: str | Path, name: str | None = None) -> dict:
    """The ``config`` (with its ``name``) of one entry of a verl interaction YAML."""
    from omegaconf import OmegaConf

    doc = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    entries = doc.get("interaction") if isinstance(doc, dict) else None
    if not entries:
        raise ValueError(f"{path}: no 'interaction:' list")
    for entry in entries:
        entry_name = entry.get("name") or entry["class_name"].rsplit(".", 1)[-1].removesuffix("Interaction").lower()
        if name is None or entry_name == name:
            return {**(entry.get("config") or {}), "name": entry_name}
    raise ValueError(f"{path}: no interaction named {name!r}; found {[e.get('name') for e in entries]}")


def write_splits(config: dict, out_dir: str | Path, seeds: list[int], val_personas: int,
                 persona_ids: list[str] | None = None) -> dict[str, Path]:
    """Write ``train.parquet`` and (if ``val_personas``) ``val.parquet``; returns their paths."""
    import pandas as pd

    from esc_env.build import resolve_personas

    if persona_ids is None:
        persona_ids = [p.id for p in resolve_personas(config.get("personas") or "builtin")]
    if not 0 <= val_personas < len(persona_ids):
        raise ValueError(f"--val-personas must be in [0, {len(persona_ids)}), got {val_personas}")
    splits = {"train": persona_ids[: len(persona_ids) - val_personas]}
    if val_personas:
        splits["val"] = persona_ids[len(persona_ids) - val_personas:]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, ids in splits.items():
        rows = dataset_rows(config, ids, seeds, split=split)
        paths[split] = out / f"{split}.parquet"
        pd.DataFrame(rows).to_parquet(paths[split])
        print(f"{paths[split]}: {len(rows)} rows ({len(ids)} personas x {len(seeds)} seeds)")
    return paths


def main(argv: list[str] | None = None) -> dict[str, Path]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(HERE / "esc_interaction.yaml"), help="the verl interaction YAML")
    ap.add_argument("--name", default=None, help="the interaction's name in the YAML (default: the first)")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--val-personas", type=int, default=2, help="the last N personas go to val.parquet")
    ap.add_argument("--persona-ids", nargs="+", default=None, help="default: every persona of the config's bank")
    args = ap.parse_args(argv)
    return write_splits(interaction_config(args.config, args.name), args.out_dir, args.seeds, args.val_personas,
                        args.persona_ids)


if __name__ == "__main__":
    main()

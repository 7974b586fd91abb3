"""The acquisition protocol of one phantom study: matrices, timings, descriptions, encodings, tricky cases.

Everything random here is drawn from the study's own generator, so study ``i`` never depends on how many
studies are generated. Tricky cases are deterministic for the first studies (``SCHEDULE``: with five or more
studies every kind occurs at least once) and occasional afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spine_kp.synth.phantom import MRSequence, fat_null_ti

TRICKY_KINDS: tuple[str, ...] = (
    "reversed_instance_numbers",  # InstanceNumber runs against the position order (T2 sagittal, even count)
    "missing_descriptions",  # no SeriesDescription / ProtocolName anywhere: weighting only from TE/TR
    "scout_in_series",  # a coronal localiser inside the T2 sagittal series
    "compressed_series",  # the T2 sagittal stored as RLE or JPEG 2000
    "stray_file",  # README.txt / .DS_Store among the DICOM files
    "sr_object",  # a non-image DICOM object (Basic Text SR) in the study
)
SCHEDULE: dict[int, tuple[str, ...]] = {
    0: ("reversed_instance_numbers", "stray_file"),
    1: ("missing_descriptions",),
    2: ("scout_in_series", "sr_object"),
    3: ("compressed_series",),
    4: ("stray_file", "reversed_instance_numbers"),
}
TRICKY_RATE = 0.08

DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "t2_sag": ("T2_TSE_SAG", "sag t2 frfse", "Sagittal T2 gewichtet", "T2 SAG", "SAG T2 FSE", "t2_tse_sag_384",
               "T2W_TSE_SAG", "Sag T2"),
    "t1_sag": ("T1_TSE_SAG", "sag t1 fse", "Sagittal T1 gewichtet", "T1 SAG", "SAG T1 FSE", "t1_tse_sag",
               "T1W_TSE_SAG"),
    "stir_sag": ("T2_TIRM_SAG", "STIR SAG", "sag stir", "FST2 SAG", "T2 FS SAG", "t2_tse_fs_sag", "TIRM sag"),
    "t2_ax": ("T2_TSE_TRA", "AX T2", "ax t2 frfse", "Transversal T2", "t2_tse_tra_320", "T2 AX"),
}  # fmt: skip
ROLES: tuple[str, ...] = ("t2_sag", "t1_sag", "stir_sag", "t2_ax")
LAYOUTS: tuple[str, ...] = ("flat", "series_dirs", "nested", "uid_names")


@dataclass(frozen=True)
class SeriesPlan:
    """Protocol of one series."""

    role: str
    shape: tuple[int, int]
    sequence: MRSequence
    description: str | None
    protocol: str | None
    series_number: int
    bits: int
    slope: float
    intercept: float
    stored_max: float  # stored value the brightest tissue maps to
    snr: float
    transfer_syntax: str


@dataclass(frozen=True)
class StudyPlan:
    """Protocol and placement choices of one study."""

    tricky: tuple[str, ...]
    series: dict[str, SeriesPlan]
    n_sag: int
    gap: float  # centre-to-centre distance of sagittal slices (thickness + gap), mm
    thickness: float
    fov: float  # sagittal field of view along the rows (mm)
    aniso: float  # column spacing / row spacing
    acq_px: tuple[float, float]  # acquisition pixel (row, col) in mm: frequency- and phase-encoding direction
    roll: float  # in-plane (sagittal) rotation of the anatomy, degrees
    coronal_tilt: float
    offset: tuple[float, float, float]
    oblique: tuple[float, float]  # rotation of the sagittal plane about z and y, degrees
    midline_offset: float  # mm of the middle slice off the spine midline
    placement: tuple[float, float]  # where the landmarks' box centre goes (fraction of W, H)
    annotated_shift: int  # annotated slice = middle + this
    layout: str
    extension: str
    stray_names: tuple[str, ...]
    annotator: int
    study_date: str
    bias: tuple[float, float, float]  # floor, length (mm), ripple


def tricky_for(index: int, rng: np.random.Generator, enabled: bool) -> tuple[str, ...]:
    """Tricky cases of study ``index``: scheduled for the first studies, occasional afterwards."""
    if not enabled:
        return ()
    if index in SCHEDULE:
        return SCHEDULE[index]
    return tuple(k for k in TRICKY_KINDS if rng.random() < TRICKY_RATE)


def _matrix(rng: np.random.Generator, size: int | None, choices: tuple[int, ...], rect: bool) -> tuple[int, int]:
    h = int(size) if size is not None else int(rng.choice(choices))
    w = int(round(h * 0.875 / 16) * 16) if rect else h
    return h, max(w, 16)


def _description(rng: np.random.Generator, role: str, missing: bool) -> tuple[str | None, str | None]:
    if missing:
        return None, None
    desc = str(rng.choice(DESCRIPTIONS[role]))
    u = rng.random()
    if role == "t2_sag" and u < 0.06:
        return "", desc  # empty description, protocol name still there
    if u < 0.12:
        return desc, None
    return desc, desc if rng.random() < 0.5 else str(rng.choice(DESCRIPTIONS[role]))


def _encoding(rng: np.random.Generator) -> tuple[int, float, float, float]:
    bits = 12 if rng.random() < 0.6 else 16
    slope, intercept = 1.0, 0.0
    if rng.random() < 0.25:
        slope = float(rng.choice([0.5, 1.2207, 2.0, 3.57]))
        intercept = float(rng.choice([0.0, -10.0, 5.0]))
    top = 2**bits - 1
    stored_max = float(rng.uniform(0.35, 0.9) * top) if bits == 12 else float(rng.uniform(1500.0, 30000.0))
    return bits, slope, intercept, stored_max


def sample_plan(rng: np.random.Generator, index: int, size: int | None, tricky_enabled: bool) -> StudyPlan:
    """Draw the protocol of study ``index`` (``size``: fixed sagittal matrix rows, else 384-512).

    Long on purpose: its random draws happen in one fixed order that pins every default phantom byte for byte
    (tests/synth); split into helpers, that order would be hard to see."""
    tricky = tricky_for(index, rng, tricky_enabled)
    missing = "missing_descriptions" in tricky
    n_sag = int(rng.integers(11, 18))
    if "reversed_instance_numbers" in tricky and n_sag % 2:
        n_sag += 1 if n_sag < 17 else -1  # even: sorting by InstanceNumber would pick the wrong middle
    rect = rng.random() < 0.15
    t2 = _matrix(rng, size, (384, 448, 512), rect)
    t1 = t2 if size is not None or rng.random() < 0.5 else _matrix(rng, None, (320, 384), rect)
    stir = t2 if size is not None else _matrix(rng, None, (320, 384), rect)
    ax_rows = max(int(round(0.625 * t2[0] / 16) * 16), 64)
    tr2, tr_stir = float(rng.uniform(3000, 5000)), float(rng.uniform(3000, 5000))
    ti = fat_null_ti(tr_stir) * float(rng.uniform(0.95, 1.05))  # near the fat null: fat dark
    sequences = {
        "t2_sag": MRSequence(float(rng.uniform(80, 120)), tr2),
        "t1_sag": MRSequence(float(rng.uniform(8, 20)), float(rng.uniform(400, 700))),
        "stir_sag": MRSequence(float(rng.uniform(30, 70)), tr_stir, ti),
        "t2_ax": MRSequence(float(rng.uniform(80, 120)), float(rng.uniform(3000, 6000))),
    }
    shapes = {"t2_sag": t2, "t1_sag": t1, "stir_sag": stir, "t2_ax": (ax_rows, ax_rows)}
    snr = {"t2_sag": (18, 35), "t1_sag": (20, 40), "stir_sag": (10, 20), "t2_ax": (15, 30)}
    numbers = rng.permutation(np.arange(2, 2 + len(ROLES))) * (100 if rng.random() < 0.2 else 1) + (
        1 if rng.random() < 0.2 else 0
    )
    series: dict[str, SeriesPlan] = {}
    for k, role in enumerate(ROLES):
        desc, proto = _description(rng, role, missing)
        bits, slope, intercept, stored_max = _encoding(rng)
        syntax = "implicit" if rng.random() < 0.1 else "explicit"
        if role == "t2_sag" and "compressed_series" in tricky:
            syntax = "rle" if rng.random() < 0.5 else "jpeg2000"
        series[role] = SeriesPlan(
            role=role,
            shape=shapes[role],
            sequence=sequences[role],
            description=desc,
            protocol=proto,
            series_number=int(numbers[k]),
            bits=bits,
            slope=slope,
            intercept=intercept,
            stored_max=stored_max,
            snr=float(rng.uniform(*snr[role])),
            transfer_syntax=syntax,
        )
    oblique = (float(rng.uniform(-4, 4)), float(rng.uniform(-3, 3))) if rng.random() < 0.3 else (0.0, 0.0)
    shift = 0
    u = rng.random()
    if u < 0.1:
        shift = 1 if u < 0.05 else -1
    strays: tuple[str, ...] = ()
    if "stray_file" in tricky:
        strays = (("README.txt",), (".DS_Store",), ("README.txt", ".DS_Store"))[int(rng.integers(3))]
    year, month, day = int(rng.integers(2012, 2025)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    thickness = float(rng.uniform(3.0, 4.0))
    return StudyPlan(
        tricky=tricky,
        series=series,
        n_sag=n_sag,
        gap=thickness + float(rng.uniform(0.3, 1.0)),
        thickness=thickness,
        fov=float(rng.uniform(260.0, 330.0)),
        aniso=float(rng.uniform(0.94, 1.06)) if rng.random() < 0.1 else 1.0,
        acq_px=(float(rng.uniform(1.0, 1.15)), float(rng.uniform(1.2, 1.4))),
        roll=float(rng.uniform(-15.0, 15.0)),
        coronal_tilt=float(rng.uniform(-0.03, 0.03)),
        offset=(float(rng.uniform(-15, 15)), float(rng.uniform(-40, 40)), float(rng.uniform(-250, 150))),
        oblique=oblique,
        midline_offset=float(rng.uniform(-2.0, 2.0)),
        placement=(float(rng.uniform(0.42, 0.6)), float(rng.uniform(0.44, 0.56))),
        annotated_shift=shift,
        layout=str(rng.choice(LAYOUTS)),
        extension=".dcm" if rng.random() < 0.6 else "",
        stray_names=strays,
        annotator=int(rng.choice([52, 54, 70, 71])),
        study_date=f"{year:04d}{month:02d}{day:02d}",
        bias=(float(rng.uniform(0.25, 0.5)), float(rng.uniform(90.0, 180.0)), float(rng.uniform(0.0, 0.12))),
    )


def randomize_plan(rng: np.random.Generator, plan: StudyPlan) -> StudyPlan:
    """Widen one study's protocol for domain-randomised pretraining (``SynthOptions.randomize``).

    Draws, from the study's own plan generator (after :func:`sample_plan`, so ordinary phantoms are unchanged):

    - field of view 240-380 mm along the rows (log-uniform): from a tight crop to the whole lower spine;
    - where the spine sits: 30-72 % of the width, 40-60 % of the height;
    - the T2 sagittal contrast: TE 70-140 ms, TR 2-6 s, and in 45 % of studies fat suppressed to 3-35 % of its
      signal (fat-saturated T2, or the water image of a water-fat acquisition) instead of bright FSE fat;
    - the T2 sagittal signal-to-noise ratio 12-90 (log-uniform): clean to noisy images;
    - the in-plane rotation of the anatomy, up to 20 degrees.
    """
    t2 = plan.series["t2_sag"]
    fat = float(rng.uniform(0.03, 0.35)) if rng.random() < 0.45 else 1.0
    seq = MRSequence(float(rng.uniform(70.0, 140.0)), float(rng.uniform(2000.0, 6000.0)), fat_scale=fat)
    snr = float(np.exp(rng.uniform(np.log(12.0), np.log(90.0))))
    series = dict(plan.series)
    series["t2_sag"] = replace(t2, sequence=seq, snr=snr)
    return replace(
        plan,
        series=series,
        fov=float(np.exp(rng.uniform(np.log(240.0), np.log(380.0)))),
        placement=(float(rng.uniform(0.3, 0.72)), float(rng.uniform(0.4, 0.6))),
        roll=float(rng.uniform(-20.0, 20.0)),
    )

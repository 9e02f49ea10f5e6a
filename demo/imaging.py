"""Demo MRI on real anatomy: a glioma inserted into the MNI152 T1 template.

Masks use BraTS 2021 labels: 1 necrotic core (inside a rim) or non-enhancing tumour,
2 oedema, 4 enhancing. Sequences are int16 in arbitrary MR units, as scanners write them.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from demo.biology import TumourBiology

NECROTIC_OR_NON_ENHANCING, OEDEMA, ENHANCING = 1, 2, 4
CSF_T1_MAX = 0.5  # template intensity below which a brain voxel is CSF
N_SHAPE_WAVES = 6
MR_UNITS = 1000.0


@dataclass(frozen=True)
class Template:
    """The MNI152 T1 template at 2 mm with its brain mask and where a lesion may be centred."""

    t1: np.ndarray  # float32, 0..1
    flair: np.ndarray  # float32, FLAIR-like contrast derived from t1
    brain: np.ndarray  # bool
    brain_index: np.ndarray  # flat indices of brain voxels
    affine: np.ndarray
    centres: np.ndarray  # (K, 3) white-matter voxels off the midline
    centre_depth_mm: np.ndarray  # (K,) their distance to the brain surface

    @property
    def voxel_mm(self) -> np.ndarray:
        return np.abs(np.diag(self.affine)[:3])


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Load the template nilearn ships (offline); cached because every case reuses it."""
    from nilearn import datasets  # slow to import; only the demo needs it

    t1_img = datasets.load_mni152_template(resolution=2)
    affine = np.asarray(t1_img.affine, dtype=float)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=2).get_fdata()) > 0
    t1 = np.asarray(t1_img.get_fdata(), dtype=np.float32) * brain
    voxel_mm = np.abs(np.diag(affine)[:3])
    depth = ndimage.distance_transform_edt(brain, sampling=voxel_mm)
    x_mm = affine[0, 0] * np.arange(t1.shape[0]) + affine[0, 3]
    # Gliomas arise in hemispheric white matter; keep centres off the midline.
    centres = np.argwhere((t1 > 0.75) & (np.abs(x_mm) > 20.0)[:, None, None])
    return Template(
        t1=t1,
        flair=(_flair_anatomy(t1) * brain).astype(np.float32),
        brain=brain,
        brain_index=np.flatnonzero(brain),
        affine=affine,
        centres=centres,
        centre_depth_mm=depth[tuple(centres.T)].astype(np.float32),
    )


@dataclass(frozen=True)
class LesionSpec:
    """Geometry of one lesion; `scale` grows it self-similarly between time points."""

    centre_vox: tuple[int, int, int]
    semi_axes_mm: tuple[float, float, float]  # tumour (rim or non-enhancing) outer surface
    core_fraction: float  # necrotic core radius relative to the tumour; 0 = no rim/core
    oedema_factor: float  # oedema outer surface relative to the tumour
    waves: np.ndarray  # (N_SHAPE_WAVES, 5): direction frequency (3), phase, amplitude


def lesion_spec(rng: np.random.Generator, bio: TumourBiology, template: Template, max_scale: float = 1.0) -> LesionSpec:
    """Place an irregular ellipsoidal lesion deep enough in white matter to fit at `max_scale`."""
    r = bio.lesion_radius_mm
    axes = tuple(float(r * f) for f in rng.uniform(0.8, 1.2, size=3))
    candidates = template.centres[template.centre_depth_mm > max(axes) * max_scale * 0.9]
    centre = tuple(int(v) for v in candidates[rng.integers(len(candidates))])
    waves = np.column_stack(
        [
            rng.normal(0.0, 2.0, size=(N_SHAPE_WAVES, 3)),
            rng.uniform(0, 2 * np.pi, size=N_SHAPE_WAVES),
            rng.uniform(0.03, 0.08, size=N_SHAPE_WAVES),
        ]
    )
    core = float(rng.uniform(0.55, 0.75)) if bio.enhancing else 0.0
    oedema = float(rng.uniform(1.3, 1.5) if bio.enhancing else rng.uniform(1.15, 1.3))
    return LesionSpec(centre, axes, core, oedema, waves)  # type: ignore[arg-type]


def _radial_distance(spec: LesionSpec, offsets_mm: np.ndarray, scale: float) -> np.ndarray:
    """Ellipsoidal radius (1 = tumour surface), bumped by smooth noise over direction."""
    axes = np.asarray(spec.semi_axes_mm) * scale
    rho = np.sqrt(((offsets_mm / axes) ** 2).sum(axis=-1))
    direction = offsets_mm / np.maximum(np.linalg.norm(offsets_mm, axis=-1, keepdims=True), 1e-6)
    bump = sum(a * np.cos(direction @ f + p) for *f, p, a in spec.waves)
    return rho / (1.0 + bump)


def lesion_mask(spec: LesionSpec, template: Template, scale: float = 1.0) -> np.ndarray:
    """BraTS label map (uint8) of the lesion at `scale`, clipped to brain parenchyma."""
    reach_mm = max(spec.semi_axes_mm) * scale * spec.oedema_factor * 1.3
    half = np.ceil(reach_mm / template.voxel_mm).astype(int)
    lo = np.maximum(np.asarray(spec.centre_vox) - half, 0)
    hi = np.minimum(np.asarray(spec.centre_vox) + half + 1, template.t1.shape)
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), axis=-1)
    rho = _radial_distance(spec, (grid - np.asarray(spec.centre_vox)) * template.voxel_mm, scale)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    labels = np.zeros(rho.shape, dtype=np.uint8)
    # Oedema spreads through parenchyma, not CSF; the tumour itself may displace both.
    labels[(rho < spec.oedema_factor) & (template.t1[box] >= CSF_T1_MAX)] = OEDEMA
    if spec.core_fraction > 0:
        labels[rho < 1.0] = ENHANCING
        labels[rho < spec.core_fraction] = NECROTIC_OR_NON_ENHANCING
    else:
        labels[rho < 1.0] = NECROTIC_OR_NON_ENHANCING
    mask = np.zeros(template.t1.shape, dtype=np.uint8)
    mask[box] = labels * template.brain[box]
    return mask


def _flair_anatomy(t1: np.ndarray) -> np.ndarray:
    """FLAIR-like contrast from T1: grey matter brighter than white matter, CSF suppressed."""
    tissue = 0.3 + 0.5 * np.clip((0.95 - t1) / 0.35, 0.0, 1.0)
    csf = np.clip((CSF_T1_MAX + 0.05 - t1) / 0.15, 0.0, 1.0)
    return (1.0 - csf) * tissue + csf * 0.08


def synthesize_sequences(rng: np.random.Generator, mask: np.ndarray, template: Template) -> dict[str, np.ndarray]:
    """Post-contrast T1 and FLAIR volumes (int16) showing the lesion of `mask`."""
    lesion = np.nonzero(mask)
    labels = mask[lesion]
    core_t1c, core_flair = (0.2, 0.75) if (labels == ENHANCING).any() else (0.55, 1.2)
    # Per label: T1c (None = T1 anatomy darkened by oedema water) and FLAIR intensity.
    appearance = {OEDEMA: (None, 1.1), ENHANCING: (1.25, 0.9), NECROTIC_OR_NON_ENHANCING: (core_t1c, core_flair)}
    t1c_values, flair_values = template.t1[lesion] * 0.85, np.empty(len(labels), dtype=np.float32)
    for label, (t1c_value, flair_value) in appearance.items():
        where = labels == label
        if t1c_value is not None:
            t1c_values[where] = t1c_value
        flair_values[where] = flair_value
    out = {}
    for name, anatomy, values in (("t1c", template.t1, t1c_values), ("flair", template.flair, flair_values)):
        volume = anatomy.copy()
        volume[lesion] = values
        # Noise inside the brain only: outside stays zero, as in a skull-stripped scan.
        flat = volume.reshape(-1)
        flat[template.brain_index] += rng.standard_normal(len(template.brain_index), dtype=np.float32) * 0.03
        out[name] = np.round(np.clip(volume, 0.0, None) * MR_UNITS).astype(np.int16)
    return out


def nifti_gz_bytes(volume: np.ndarray, affine: np.ndarray) -> bytes:
    """NIfTI-1 in MNI space, gzipped with a zero timestamp so rebuilds are byte-identical."""
    import nibabel as nib

    img = nib.Nifti1Image(volume, affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(affine, code=4)
    img.set_qform(affine, code=4)
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


def timepoint_files(sequences: dict[str, np.ndarray], mask: np.ndarray, affine: np.ndarray) -> dict[str, bytes]:
    """File name -> bytes of one time-point folder: `<seq>.nii.gz` and `lesion_mask.nii.gz`."""
    return {
        f"{name}.nii.gz": nifti_gz_bytes(volume, affine) for name, volume in {**sequences, "lesion_mask": mask}.items()
    }


def lesion_volume_ml(mask: np.ndarray, affine: np.ndarray, labels: tuple[int, ...] = (1, 2, 4)) -> float:
    """Volume of the given labels in mL."""
    return float(np.isin(mask, labels).sum() * abs(np.linalg.det(affine[:3, :3])) / 1000.0)

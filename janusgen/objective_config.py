"""The objective's configuration: loss weights, curriculum and masking (the objective itself, which
needs torch, is janusgen.objectives)."""

from __future__ import annotations

from dataclasses import dataclass

from janusgen.config import ConfigError, check_bool, check_choice, check_float, check_int
from janusgen.errors import JanusError


@dataclass(frozen=True)
class ObjectiveConfig:
    """Loss weights and masking. `ar`, `cmlm` and `janus` are the same loss with different weights:
    a view whose every term has weight zero is not computed at all."""

    name: str = "janus"
    label_smoothing: float = 0.1
    ar_weight: float = 1.0
    nar_weight: float = 0.5
    aux_weight: float = 0.5
    length_weight: float = 0.1
    kl_ar_nar: float = 1.0
    kl_nar_aux: float = 1.0
    kl_ar_aux: float = 3.0
    # Curriculum: the first `ar_only_updates` updates train L_AR (and L_len) alone, which is 2.5x cheaper
    # per update and leaves the unigram plateau far sooner; the other terms join after that, their KL
    # weights ramped linearly from 0 over the next `kl_warmup_updates` updates. 0 and 0: the plain loss.
    ar_only_updates: int = 0
    kl_warmup_updates: int = 0
    # The same curriculum as fractions of the run (of --time-budget when there is one, else of
    # --max-updates), so that one recipe behaves alike on a slow and a fast machine.
    ar_only_fraction: float = 0.0
    kl_warmup_fraction: float = 0.0
    # span (ours: exactly round(ratio * n) inner tokens, in Poisson spans), release (the authors' release:
    # ceil(ratio * (n + 2)) positions in possibly overlapping Poisson spans, then BOS/EOS unmasked, which
    # leaves about 0.56 of the inner tokens masked, and every <unk> of the target masked too) or uniform
    # (CMLM: k ~ U{1..n} single tokens)
    masking: str = "span"
    # the share of sentences masked after a random cut instead (everything from there to EOS): what a
    # speculative draft sees, a given prefix to continue; 0 is the paper's training
    suffix_fraction: float = 0.0
    mask_ratio: float = 0.7
    span_lambda: float = 2.0
    random_order: bool = False  # order of the masked tokens in the AUX/G streams: left to right or random
    encode_per_view: bool = False  # encode the source once per view (different dropout), as the authors did
    # Which way the KLs with the AR view teach. The paper (and the authors' release) passes gradients
    # through both sides, so a poor NAR/AUX view pulls the AR view towards it. "always": the AR side is
    # a fixed teacher (KL*(AR, NAR) and KL*(AR, AUX) train only the NAR/AUX view); "until_close": so
    # until, at a validation, the other view's cross-entropy on the masked tokens comes within
    # `kl_teacher_margin` nats of the AR view's on the same tokens; from then on both sides, as the paper.
    kl_ar_detach: str = "never"
    kl_teacher_margin: float = 0.5

    def __post_init__(self) -> None:
        s = "objective"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(s, "name", self.name, "must be a non-empty name")
        check_float(self, s, "label_smoothing", 0.0, 1.0, hi_open=True)
        weights = ("ar_weight", "nar_weight", "aux_weight", "length_weight")
        for name in (*weights, "kl_ar_nar", "kl_nar_aux", "kl_ar_aux"):
            check_float(self, s, name, 0.0)
        if self.ar_weight == self.nar_weight == self.aux_weight == 0:
            raise JanusError(
                "--objective-option: ar_weight, nar_weight and aux_weight are all 0: nothing to train"
            )
        check_int(self, s, "ar_only_updates", 0)
        check_int(self, s, "kl_warmup_updates", 0)
        check_float(self, s, "ar_only_fraction", 0.0, 1.0)
        check_float(self, s, "kl_warmup_fraction", 0.0, 1.0)
        for name in ("ar_only_updates", "ar_only_fraction"):
            if getattr(self, name) > 0 and self.ar_weight <= 0:
                raise ConfigError(
                    s, name, getattr(self, name), "needs an objective with an AR term (ar_weight > 0)"
                )
        for counted, fraction in (
            ("ar_only_updates", "ar_only_fraction"),
            ("kl_warmup_updates", "kl_warmup_fraction"),
        ):
            if getattr(self, counted) > 0 and getattr(self, fraction) > 0:
                raise JanusError(
                    f"--objective-option {counted} and {fraction}: give the curriculum in updates or as a "
                    "fraction of the run, not both"
                )
        check_choice(self, s, "masking", MASKINGS)
        check_float(self, s, "suffix_fraction", 0.0, 1.0)
        check_float(self, s, "mask_ratio", 0.0, 1.0, lo_open=True)
        check_float(self, s, "span_lambda", 0.0, 1000.0, lo_open=True)
        check_bool(self, s, "random_order")
        check_bool(self, s, "encode_per_view")
        check_choice(self, s, "kl_ar_detach", KL_AR_DETACH)
        check_float(self, s, "kl_teacher_margin", 0.0)

    # Which views a model trained with this objective has learnt: a term or a KL in which the view takes
    # part (the objective computes exactly these; decoding a view that learnt nothing gives noise)
    @property
    def trains_ar(self) -> bool:
        return self.ar_weight > 0 or self.kl_ar_nar > 0 or self.kl_ar_aux > 0

    @property
    def trains_nar(self) -> bool:
        return self.nar_weight > 0 or self.kl_ar_nar > 0 or self.kl_nar_aux > 0

    @property
    def trains_aux(self) -> bool:
        return self.aux_weight > 0 or self.kl_nar_aux > 0 or self.kl_ar_aux > 0


OBJECTIVES = ("ar", "cmlm", "janus")
MASKINGS = ("span", "release", "uniform")
KL_AR_DETACH = ("never", "always", "until_close")

"""Every named setup in one place, each a table of zero-argument builders whose keys are the choices the
command line offers: model sizes (`MODEL_PRESETS`), objectives (`OBJECTIVE_PRESETS`), the demo's
candidate models (`DEMO_PRESETS`) and the quality bench's budgets (`BUDGETS`); beside them the training
recipes (`RECIPES`), which adapt a model and an objective and give the training options.

Nothing here imports torch: the command line reads these tables to build its options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from janusgen.errors import JanusError
from janusgen.model.config import ModelConfig
from janusgen.objective_config import ObjectiveConfig
from janusgen.training.config import TrainConfig

# ---------------------------------------------------------------------------------------------- models
# `tiny` (tests), `small` (~9M parameters with an 8k vocabulary, trains on 2 CPU cores), `compact` (small
# with 3+2 layers, for slow CPUs), `base` (ours at the size of the paper's IWSLT model: pre-norm,
# attention dropout 0.1, a relative-position bias in the decoder, PyTorch's initialisation),
# `paper-iwslt` (the paper's IWSLT model exactly, as the authors' release trains it: fairseq's
# transformer_iwslt_de_en, post-norm, attention dropout 0, learned absolute positions only, BERT-style
# initialisation, dropout 0.3, BOS before the source, the release's length classifier over lengths
# 0 .. 255, AR query rows at their content row's position), `transformer-base` (Vaswani et al. base).
# Every preset but `paper-iwslt` keeps our own choices (`length_predictor` "ours", `ar_query_position`
# "next", no source BOS).


def tiny_model() -> ModelConfig:
    return ModelConfig(
        d_model=32,
        ffn_dim=64,
        heads=2,
        encoder_layers=2,
        decoder_layers=2,
        dropout=0.0,
        attention_dropout=0.0,
        max_positions=64,
        max_target_length=62,
    )


def small_model() -> ModelConfig:
    return ModelConfig(
        d_model=256,
        ffn_dim=1024,
        heads=4,
        encoder_layers=4,
        decoder_layers=3,
        dropout=0.1,
        attention_dropout=0.0,
    )


def compact_model() -> ModelConfig:
    """`small` with 3+2 layers: ~1.6x the updates per second on a slow CPU."""
    return dataclasses.replace(small_model(), encoder_layers=3, decoder_layers=2)


def paper_iwslt_model() -> ModelConfig:
    return ModelConfig(
        dropout=0.3,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pre_norm=False,
        learned_positions=True,
        relative_positions=0,
        init="bert",
        source_bos=True,
        length_predictor="release",
        max_target_length=255,  # the release's embed_length has 256 rows: lengths 0 .. 255
        ar_query_position="same",
    )


def transformer_base_model() -> ModelConfig:
    return ModelConfig(ffn_dim=2048, heads=8, dropout=0.1)


MODEL_PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": tiny_model,
    "small": small_model,
    "compact": compact_model,
    "base": ModelConfig,
    "paper-iwslt": paper_iwslt_model,
    "transformer-base": transformer_base_model,
}


def model_preset(name: str) -> ModelConfig:
    """The model preset `name` (a key of MODEL_PRESETS)."""
    if name not in MODEL_PRESETS:
        raise JanusError(f"unknown preset {name!r}; choose one of {', '.join(MODEL_PRESETS)}")
    return MODEL_PRESETS[name]()


# ------------------------------------------------------------------------------------------ objectives


def ar_objective() -> ObjectiveConfig:
    """L_AR alone."""
    return ObjectiveConfig(
        name="ar",
        nar_weight=0.0,
        aux_weight=0.0,
        length_weight=0.0,
        kl_ar_nar=0.0,
        kl_nar_aux=0.0,
        kl_ar_aux=0.0,
    )


def cmlm_objective() -> ObjectiveConfig:
    """L_NAR + 0.1 L_len with CMLM masking."""
    return ObjectiveConfig(
        name="cmlm",
        ar_weight=0.0,
        nar_weight=1.0,
        aux_weight=0.0,
        kl_ar_nar=0.0,
        kl_nar_aux=0.0,
        kl_ar_aux=0.0,
        masking="uniform",
    )


# `janus` is ObjectiveConfig's defaults: the paper's full loss
OBJECTIVE_PRESETS: dict[str, Callable[[], ObjectiveConfig]] = {
    "ar": ar_objective,
    "cmlm": cmlm_objective,
    "janus": ObjectiveConfig,
}


def objective_preset(name: str) -> ObjectiveConfig:
    """The objective preset `name` (a key of OBJECTIVE_PRESETS)."""
    if name not in OBJECTIVE_PRESETS:
        raise JanusError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVE_PRESETS)}")
    return OBJECTIVE_PRESETS[name]()


# --------------------------------------------------------------------------------------------- recipes
# A recipe adapts a model and an objective to a way of training and gives the training options; the
# options given explicitly then win over it.

Recipe = Callable[[ModelConfig, ObjectiveConfig], tuple[ModelConfig, ObjectiveConfig, TrainConfig]]


def cpu_recipe(
    model: ModelConfig, objective: ObjectiveConfig
) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig]:
    """Defaults that learn within minutes to an hour on a few CPU cores (the demo's; BENCHMARKS.md):
    2,048-token batches (at equal time twice the updates of 4,096 learned faster), lr 2e-3 with a
    warmup of 5% of the run, no dropout (about one epoch: nothing to regularise yet). A JANUS objective
    trains L_AR alone for the first half of the run (an AR-only update costs ~40% of a joint one), then
    JANUS without the KL terms (the cpu recipe): the paper's "without KL" ablation, not the paper's loss,
    and every result it gives must be named so. At these budgets the NAR and AUX distributions are poor
    teachers and the KLs pull the AR view toward them (AR greedy and NAR both better without, at both
    seeds measured at 1,500 updates: BENCHMARKS.md). Fractions are of --time-budget when there is one, so
    the recipe behaves alike on a slow and a fast machine."""
    model = dataclasses.replace(model, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    joint = objective.ar_weight > 0 and (objective.nar_weight > 0 or objective.aux_weight > 0)
    if joint:
        objective = dataclasses.replace(
            objective, ar_only_fraction=0.5, kl_ar_nar=0.0, kl_nar_aux=0.0, kl_ar_aux=0.0
        )
    train = TrainConfig(
        max_tokens=2048, lr=2e-3, warmup_fraction=0.05, validate_every=250, log_every=25, keep_last=1
    )
    return model, objective, train


RELEASE_MAX_UPDATES = 200_000  # the authors' IWSLT script's --max-update


def paper_recipe(
    model: ModelConfig, objective: ObjectiveConfig
) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig]:
    """The paper-scale defaults (a GPU), as the authors' release's IWSLT script trains: lr 5e-4 with the
    inverse square root schedule after 10,000 warmup updates, Adam betas (0.9, 0.98), no gradient
    clipping, up to 200,000 updates. Its weight decay is not established here: TrainConfig's (ours,
    0.0001) stays. TrainConfig's own defaults (4,000 warmup updates, clipping at 1.0) are our choices,
    which `janus bench quality --budget gpu-ours` keeps."""
    return (
        model,
        objective,
        TrainConfig(max_updates=RELEASE_MAX_UPDATES, warmup_updates=10_000, clip_norm=0.0),
    )


def finetune_recipe(
    model: ModelConfig, objective: ObjectiveConfig
) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig]:
    """Fine-tuning a pre-trained model (`janus train --init-from`, BART-JANUS): BART's own summarisation
    settings (fairseq's XSum / CNN-DM recipe): lr 3e-5 with 500 warmup updates, Adam betas
    (0.9, 0.999), weight decay 0.01, clipping at 0.1, and 20k updates; a high lr would erase what
    pre-training learnt. The model (its dropout included) is the checkpoint's."""
    train = TrainConfig(
        max_updates=20_000,
        lr=3e-5,
        warmup_updates=500,
        adam_beta2=0.999,
        weight_decay=0.01,
        clip_norm=0.1,
        validate_every=1000,
    )
    return model, objective, train


RECIPES: dict[str, Recipe] = {"paper": paper_recipe, "cpu": cpu_recipe, "finetune": finetune_recipe}

# ------------------------------------------------------------------------------------------------ demo

DEMO_TIME_BUDGET_S = 17 * 60.0  # `janus demo`: training time (README: 17 minutes; under 25 in all on 2 cores)


@dataclass(frozen=True)
class DemoPreset:
    """What the demo trains: the `cpu` recipe on a model of `encoder_layers` + `decoder_layers` layers,
    d 256, with a 4k vocabulary (8k costs 1.4x more per update here: the vocabulary-sized terms
    dominate). `demo.plan_demo` picks one of DEMO_PRESETS from the machine's measured speed."""

    vocab_size: int = 4000
    d_model: int = 256
    ffn_dim: int = 1024
    heads: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 3
    precision: str = "auto"

    def model(self) -> ModelConfig:
        return self._recipe()[0]

    def objective(self) -> ObjectiveConfig:
        return self._recipe()[1]

    def train(self, time_budget_s: float | None, seed: int) -> TrainConfig:
        return dataclasses.replace(
            self._recipe()[2],
            max_updates=1_000_000,
            time_budget_s=time_budget_s,
            precision=self.precision,
            valid_bleu_sentences=200,
            seed=seed,
            keep_last=3,
        )

    def _recipe(self) -> tuple[ModelConfig, ObjectiveConfig, TrainConfig]:
        model = dataclasses.replace(
            small_model(),
            d_model=self.d_model,
            ffn_dim=self.ffn_dim,
            heads=self.heads,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
        )
        return cpu_recipe(model, objective_preset("janus"))


# The demo's candidate models, largest first, named after the model presets of their depth. The demo
# takes the largest that the budget gives at least demo.TARGET_UPDATES updates: at about 1,000 updates
# 3+2 layers beat 4+3 (14.97 / 7.00 against 12.71 / 6.32 BLEU, AR beam 5 / NAR T=10), so 4+3 needs a
# budget well past that (BENCHMARKS.md, "Every machine").
DEMO_PRESETS: dict[str, Callable[[], DemoPreset]] = {
    "small": DemoPreset,
    "compact": lambda: DemoPreset(encoder_layers=3, decoder_layers=2),
}

# ----------------------------------------------------------------------------------------- bench budgets


@dataclass(frozen=True)
class Budget:
    """One comparison of `janus bench quality`: the model, the training options (updates included) and
    the objective of each system, so that `ar`, `cmlm` and `janus` differ only in what they learn."""

    name: str
    model: ModelConfig
    train: TrainConfig
    objectives: dict[str, ObjectiveConfig]

    def scaled(self, updates: int | None, seed: int) -> Budget:
        """This budget with `updates` per system (None: its own) and the training seed `seed`."""
        max_updates = self.train.max_updates if updates is None else updates
        return dataclasses.replace(
            self, train=dataclasses.replace(self.train, max_updates=max_updates, seed=seed)
        )


def cpu_budget() -> Budget:
    """The demo's model and options (the `cpu` recipe) for 1,500 updates, JANUS with the paper's loss
    (the claims are the paper's: the recipe's no-KL variant is an ablation, `--janus-option kl_ar_aux=0
    ...`) after the recipe's AR-only half, the KLs ramped in over the next 7% (as the 1,500-update benches
    of 2026-11-21: 800 AR-only updates, a 100-update ramp); fractions are of the updates here."""
    demo = DEMO_PRESETS["small"]()
    train_cfg = dataclasses.replace(demo.train(None, TrainConfig().seed), max_updates=1500, keep_last=1)
    janus = dataclasses.replace(
        objective_preset("janus"), ar_only_fraction=demo.objective().ar_only_fraction, kl_warmup_fraction=0.07
    )
    objectives = {"ar": objective_preset("ar"), "cmlm": objective_preset("cmlm"), "janus": janus}
    return Budget("cpu", demo.model(), train_cfg, objectives)


def cpu_long_budget() -> Budget:
    """The cpu budget at 4x its updates (6,000: about 2.5 hours per JANUS run on 2 cores), for the
    question the short one cannot answer: does the AR gap close once NAR/AUX are good teachers? Every
    finished step is kept, so it can be run an hour at a time: run the same command again to continue."""
    cpu = cpu_budget()
    return dataclasses.replace(
        cpu, name="cpu-long", train=dataclasses.replace(cpu.train, max_updates=4 * cpu.train.max_updates)
    )


def gpu_budget() -> Budget:
    """The paper's IWSLT setting as the authors' release trains it: `paper-iwslt` (their model exactly:
    6+6 layers, d512, post-norm, BERT init, dropout 0.3, source BOS, their length classifier and AR query
    positions), the `paper` recipe's optimisation (their script: lr 5e-4 inverse square root after
    10,000 warmup updates, no clipping, 200,000 updates), 8k-token batches (theirs: 4,096 on each of 2
    GPUs), and JANUS with their masking (`release`) and encoding the source once per view as they do
    (each view its own dropout)."""
    model = model_preset("paper-iwslt")
    objectives = {name: build() for name, build in OBJECTIVE_PRESETS.items()}
    objectives["janus"] = dataclasses.replace(objectives["janus"], encode_per_view=True, masking="release")
    _, _, paper = paper_recipe(model, objectives["janus"])
    train_cfg = dataclasses.replace(
        paper,
        max_tokens=8192,
        validate_every=1000,
        valid_bleu_sentences=500,
        log_every=100,
        keep_last=1,
    )
    return Budget("gpu", model, train_cfg, objectives)


def gpu_ours_budget() -> Budget:
    """The gpu budget with our optimisation choices instead of the release's: TrainConfig's warmup (4,000
    updates) and clipping (gradient norm 1.0), and 50,000 updates (a quarter of the release's 200,000)."""
    budget = gpu_budget()
    ours = TrainConfig()
    train_cfg = dataclasses.replace(
        budget.train, max_updates=50_000, warmup_updates=ours.warmup_updates, clip_norm=ours.clip_norm
    )
    return dataclasses.replace(budget, name="gpu-ours", train=train_cfg)


BUDGETS: dict[str, Callable[[], Budget]] = {
    "cpu": cpu_budget,
    "cpu-long": cpu_long_budget,
    "gpu": gpu_budget,
    "gpu-ours": gpu_ours_budget,
}

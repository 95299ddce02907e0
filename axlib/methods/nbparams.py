"""Validation of every notebook's parameters, before any work.

Each notebook's validation cell calls ``nbparams.check(NB, name=value, ...)`` with every parameter of
its ``parameters`` cell (``profile`` included). :data:`VALIDATORS` maps the notebook id to a function
whose keyword-only arguments are exactly those parameters, all required: a parameter added to a
notebook without a check, or a notebook without a validator, fails ``tests/test_reliability_params.py``.

A bad value raises :class:`~axlib.validate.ParameterError` naming the parameter, the value and what is
allowed. Validation is cheap: no data is loaded, no network trained or read from disk; layer names come
from the network *definitions*, built on PyTorch's ``meta`` device (no weights, no memory). The
notebooks keep their own normalising lines (``models = res.validate_models(...)`` etc.) after the call;
those give the values the run key is computed from.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from axlib import validate
from axlib.validate import ParameterError

#: Notebook id -> validator taking that notebook's parameters as keyword arguments.
VALIDATORS: dict[str, Callable[..., None]] = {}


def validate_params(nb_id: str, params: dict) -> None:
    """Validate the parameter dict of notebook ``nb_id`` (as :func:`axlib.repro.effective_params` gives it)."""
    check(nb_id, **params)


def check(nb_id: str, **params) -> None:
    """Check every parameter of notebook ``nb_id``; raises ParameterError on the first bad one."""
    if nb_id not in VALIDATORS:
        raise ParameterError(f"notebook {nb_id!r} has no parameter validator; known: {sorted(VALIDATORS)}")
    VALIDATORS[nb_id](**params)


def _register(nb_id: str):
    def deco(fn):
        VALIDATORS[nb_id] = fn
        return fn
    return deco


# --------------------------------------------------------------------------- shared pieces


def _profile(profile) -> None:
    from axlib import runs

    validate.choice("profile", profile, runs.PROFILES)


def _zoo(zoo) -> None:
    """Training-recipe overrides: a mapping of known recipe fields with valid values (checked against
    the zoo's default recipe; each network's own recipe is checked again before it trains)."""
    from axlib.models import zoo as zoo_module

    validate.mapping("zoo", zoo)
    zoo_module.check_overrides(zoo_module.Recipe(), dict(zoo))


@functools.cache
def network(model: str):
    """The untrained definition of registered network ``model`` on the ``meta`` device (no weights)."""
    import torch

    from axlib import models

    with torch.device("meta"):
        return models.spec(model).build().eval()


def conv_layers(model: str) -> list[str]:
    from axlib.methods import resilience

    return resilience.noise_layers(network(model))


def _names(name: str, values, allowed: list[str], model: str, what: str) -> list[str]:
    """A non-empty list of distinct names out of ``allowed`` (the ``what`` of ``model``)."""
    values = validate.nonempty(name, values, f"{what} of {model}; allowed: {allowed}")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ParameterError(f"parameter {name} has unknown value(s) {bad}: not {what} of {model}; allowed: {allowed}")
    return validate.unique(name, values)


def _per_model(name: str, value, model_names: list[str], allowed: Callable[[str], list[str]], what: str) -> None:
    """``value`` of a per-network layer parameter: "all", one list for every network, or a dict network ->
    ("all" | list). Dict keys must be registered networks (keys of networks not in ``model_names`` are
    checked too: they are typos or belong to another selection)."""
    from axlib import models

    if isinstance(value, dict):
        unknown = [k for k in value if k not in models.MODELS]
        if unknown:
            raise ParameterError(f"parameter {name} has unknown network(s) {unknown}; allowed keys: {list(models.MODELS)}")
        items = list(value.items())
    elif value == "all" or isinstance(value, list):
        items = [(m, value) for m in model_names]
    else:
        raise ParameterError(f"parameter {name}={value!r} must be \"all\", a list of layer names or a dict "
                             "network -> (\"all\" | list of layer names)")
    for m, v in items:
        if isinstance(v, str) and v == "all":
            continue
        if isinstance(v, str) or not isinstance(v, list):
            raise ParameterError(f"parameter {name} for {m}: {v!r} must be \"all\" or a list of {what}")
        _names(f"{name} for {m}", v, allowed(m), m, what)


# --------------------------------------------------------------------------- akhlaghi2020


@_register("akhlaghi2020/eq2_1")
def _eq2_1(*, m_values, bits_per_key, k_values, n_seeds, min_fp_events, min_queries, max_queries, thesis_settings,
           alpha, key_bytes, seed, profile):
    from axlib.methods import bloomreuse as br

    br.check_params(m_values, bits_per_key, k_values, n_seeds, min_fp_events, min_queries, max_queries, alpha,
                    key_bytes, seed, thesis_settings)
    _profile(profile)


@_register("akhlaghi2020/fig2_11")
def _fig2_11(*, models, modes, bf_main, bf_extra, stored_value, ablation_values, bf_grouping, n_profile, n_test,
             mult_pj, seed, profile):
    from axlib.methods import bloom_cnn as bc
    from axlib.methods import bloom_cnn_serve as bs

    bc.check_models(models)
    bs.plan_runs(modes, bf_main, bf_extra, stored_value, ablation_values)
    bs.check_inference_params(n_profile, n_test, seed, mult_pj, bf_grouping)
    _profile(profile)


@_register("akhlaghi2020/fig2_4")
def _fig2_4(*, models, n_max, n_profile, n_test, seed, profile):
    from axlib.methods import bloom_cnn as bc

    bc.check_models(models)
    bc.check_profile_params([32], n_max, n_profile, n_test, seed, bc.SCOPES)
    _profile(profile)


@_register("akhlaghi2020/fig2_5")
def _fig2_5(*, models, apx_bits, n_max, n_profile, n_test, seed, profile):
    from axlib.methods import bloom_cnn as bc

    bc.check_models(models)
    bc.check_profile_params(apx_bits, n_max, n_profile, n_test, seed, ["layer"])
    _profile(profile)


def _images(kernels, tile, max_tiles, fractions, split_by, seed) -> None:
    from axlib.methods import fu_approx as fa

    fa.check_kernels(kernels)
    fa.dataset_params(tile, max_tiles, fractions, split_by, seed)


@_register("akhlaghi2020/fig2_7")
def _fig2_7(*, kernels, tile, max_tiles, fractions, split_by, limits, sqrt_mul_ratio, vdd_v, fu_scales, seed, profile):
    from axlib.methods import fu_approx as fa

    _images(kernels, tile, max_tiles, fractions, split_by, seed)
    validate.choice("limits", limits, ["measured", "thesis"])
    fa.fu_energy_pj(sqrt_mul_ratio, vdd_v)
    validate.unique("fu_scales", validate.numbers("fu_scales", fu_scales, 0.01, 1000.0))
    _profile(profile)


@_register("akhlaghi2020/tab2_1")
def _tab2_1(*, kernels, tile, max_tiles, fractions, split_by, psnr_min, start_exponent, max_exponent, max_step3,
            error_modes, seed, profile):
    from axlib import imaging
    from axlib.methods import fu_approx as fa

    _images(kernels, tile, max_tiles, fractions, split_by, seed)
    for mode in validate.unique("error_modes", validate.choices("error_modes", error_modes, imaging.ERROR_MODES)):
        fa.check_rate_params(psnr_min, start_exponent, max_exponent, mode, max_step3)
    _profile(profile)


@_register("akhlaghi2020/tab2_3")
def _tab2_3(*, kernels, tile, max_tiles, fractions, split_by, limits, limit_error_mode, psnr_min, n_out_grid,
            n_in_factors, fig_k, m_max, seed, profile):
    from axlib import imaging
    from axlib.methods import fu_approx as fa

    _images(kernels, tile, max_tiles, fractions, split_by, seed)
    validate.choice("limits", limits, ["measured", "thesis"])
    validate.choice("limit_error_mode", limit_error_mode, imaging.ERROR_MODES)
    fa.check_rate_params(psnr_min, 1, 7, limit_error_mode, 50)
    fa.check_bf_params({}, n_out_grid, n_in_factors, fig_k, m_max)
    _profile(profile)


@_register("akhlaghi2020/fig3_1")
def _fig3_1(*, models, n_images, seed, zoo, profile):
    from axlib import models as zoo_models

    allowed = [m for m, s in zoo_models.MODELS.items() if s.dataset in ("cifar10", "imagenet")]
    validate.unique("models", validate.choices("models", models, allowed))
    validate.integer("n_images", n_images, lo=1, hi=10000)
    validate.integer("seed", seed, lo=0)
    _zoo(zoo)
    _profile(profile)


def _snapea_sweep(models, th_mults, ns, n_opt, n_test, n_ops, seed, zoo, profile, eps_values=None) -> None:
    from axlib.methods import snapea

    snapea.validate_sweep(models, th_mults, ns, n_opt, n_test, n_ops, seed)
    if eps_values is not None:
        validate.unique("eps_values", validate.numbers("eps_values", eps_values, 0.0, 1.0))
    _zoo(zoo)
    _profile(profile)


@_register("akhlaghi2020/fig3_8")
def _fig3_8(*, models, th_mults, ns, n_opt, n_test, n_ops, seed, zoo, profile):
    _snapea_sweep(models, th_mults, ns, n_opt, n_test, n_ops, seed, zoo, profile)


@_register("akhlaghi2020/fig3_9")
def _fig3_9(*, models, eps_values, th_mults, ns, n_opt, n_test, n_ops, seed, zoo, profile):
    _snapea_sweep(models, th_mults, ns, n_opt, n_test, n_ops, seed, zoo, profile, eps_values)


@_register("akhlaghi2020/fig3_12")
def _fig3_12(*, models, eps_values, th_mults, ns, n_opt, n_test, n_ops, seed, zoo, profile):
    _snapea_sweep(models, th_mults, ns, n_opt, n_test, n_ops, seed, zoo, profile, eps_values)


@_register("akhlaghi2020/fig3_4")
def _fig3_4(*, th, model, layer, n_images, seed, profile):
    from axlib.methods import snapea

    validate.number("th", th, lo=-100, hi=100)
    validate.choice("model", model, snapea.SNAPEA_MODELS)
    allowed = [sl.name for sl in snapea.snapea_layers(network(model))]
    validate.choice("layer", layer, allowed)
    validate.integer("n_images", n_images, lo=1, hi=2000)
    validate.integer("seed", seed, lo=0)
    _profile(profile)


@_register("akhlaghi2020/tab4_2")
def _tab4_2(*, apps, features, targets_pct, systems, data, n_train, n_val, batch, steps, lr, lambda_q, eta,
            svm_lambda, seed, profile):
    from axlib.methods import lemax

    lemax.validate_params(apps, features, targets_pct, systems, data, n_train, n_val, batch, steps, lr, lambda_q,
                          eta, svm_lambda, seed)
    _profile(profile)


def _learned(models, n_train, epochs, batch_size, lr, reg_share, check_every, q_init, ber_init, ft_iterations,
             n_select, n_report, seed, profile) -> None:
    from axlib.methods import learned_approx_flow

    learned_approx_flow.validate_params(models, n_train, epochs, batch_size, lr, reg_share, check_every,
                                        ft_iterations, n_select, n_report, seed, q_init, ber_init)
    _profile(profile)


@_register("akhlaghi2020/fig4_5")
@_register("akhlaghi2020/fig4_8")
@_register("akhlaghi2020/fig4_11")
def _fig4_layerwise(*, models, n_train, epochs, batch_size, lr, reg_share, check_every, q_init, ber_init,
                    ft_iterations, n_select, n_report, seed, profile):
    """Figs. 4.5, 4.8 and 4.11 share their parameters (one learning-run family each)."""
    _learned(models, n_train, epochs, batch_size, lr, reg_share, check_every, q_init, ber_init, ft_iterations,
             n_select, n_report, seed, profile)


@_register("akhlaghi2020/fig4_12")
def _fig4_12(*, models, n_train, epochs, batch_size, lr, reg_share, check_every, q_init, ber_init, ft_iterations,
             n_select, n_report, gammas, seed, profile):
    _learned(models, n_train, epochs, batch_size, lr, reg_share, check_every, q_init, ber_init, ft_iterations,
             n_select, n_report, seed, profile)
    validate.unique("gammas", validate.numbers("gammas", gammas, lo=0.1, hi=10.0))


@_register("akhlaghi2020/fig4_13")
def _fig4_13(*, models, n_train, epochs, batch_size, lr, reg_share, check_every, q_init, ber_init, n_select, n_report,
             budget, gamma, seed, profile):
    from axlib.methods import fpga_alloc

    _learned(models, n_train, epochs, batch_size, lr, reg_share, check_every, q_init, ber_init, 0, n_select, n_report,
             seed, profile)
    fpga_alloc.check_budget(budget)
    validate.number("gamma", gamma, lo=0.1, hi=10.0)


def _slice_runs(network, variants, steps, n_train, batch_size, lr, schedule, eval_every, n_eval, n_test, seed,
               profile, **extra):
    """Every training run of a ch.5 page checked by :meth:`TrainSpec.validate` (``variants``: the
    kind/init/slice keyword sets); the pages need at least one step."""
    from axlib.methods import slicegen_train

    validate.integer("steps", steps, 1, 10_000_000)
    for v in variants:
        slicegen_train.TrainSpec(network=network, steps=steps, n_train=n_train, batch_size=batch_size, lr=lr,
                                 schedule=schedule, eval_every=eval_every, n_eval=n_eval, n_test=n_test, seed=seed,
                                 **extra, **v).validate()
    _profile(profile)


@_register("akhlaghi2020/sec5_4_3")
def _sec5_4_3(*, networks, slice_shape, target_db, n_grid, seed, profile):
    from axlib.methods import slicegen_counts
    from axlib.nn import slicegen

    validate.unique("networks", validate.nonempty("networks", validate.choices("networks", networks,
                                                                               slicegen_counts.PRETRAINED)))
    shape = slicegen.check_slice_shape(slice_shape)
    for n in networks:
        slicegen_counts.check_fits(n, shape, 1)
    validate.number("target_db", target_db, lo=0.0, hi=200.0)
    validate.integer("n_grid", n_grid, lo=4, hi=10_000)
    validate.integer("seed", seed, 0)
    _profile(profile)


@_register("akhlaghi2020/tab5_1")
def _tab5_1(*, network, configs, init, steps, n_train, batch_size, lr, schedule, eval_every, n_eval, n_test,
            bn_batches, seed, profile):
    from axlib.nn import slicegen

    validate.choice("init", init, ("svd", "scratch"))
    variants = [{"kind": "original", "init": "pretrained" if init == "svd" else "scratch"}]
    for c in validate.nonempty("configs", validate.as_list("configs", configs)):
        c = validate.mapping("configs entry", c)
        if set(c) != {"slice_shape", "n_c"}:
            raise ParameterError(f"each configs entry needs exactly the keys slice_shape and n_c, got {sorted(c)}")
        variants.append({"kind": "csg", "slice_shape": slicegen.check_slice_shape(c["slice_shape"]), "n_c": c["n_c"],
                         "init": init})
    validate.unique("configs", [(v["slice_shape"], v["n_c"]) for v in variants[1:]])
    _slice_runs(network, variants, steps, n_train, batch_size, lr, schedule, eval_every, n_eval, n_test, seed,
                profile, bn_batches=bn_batches)


@_register("akhlaghi2020/tab5_5")
def _tab5_5(*, network, n_cs, slice_shape, steps, n_train, batch_size, lr, schedule, eval_every, n_eval, n_test,
            seed, profile):
    from axlib.nn import slicegen

    shape = slicegen.check_slice_shape(slice_shape)
    n_cs = validate.unique("n_cs", validate.nonempty("n_cs", validate.integers("n_cs", n_cs, lo=1, hi=1 << 20)))
    variants = [{"kind": "original", "init": "scratch"}]
    variants += [{"kind": "bsg", "slice_shape": shape, "n_c": n, "init": "scratch"} for n in n_cs]
    _slice_runs(network, variants, steps, n_train, batch_size, lr, schedule, eval_every, n_eval, n_test, seed,
                profile)


# --------------------------------------------------------------------------- axlib


@_register("axlib/acc01")
def _acc01(*, model, multipliers, n_test, n_calib, seed, profile):
    from axlib.methods import approx_eval

    approx_eval.validate_params(model, multipliers, n_test, n_calib, seed)
    _profile(profile)


@_register("axlib/bench01")
def _bench01(*, shapes, batch_sizes, repeats, lowrank_tables, seed, profile):
    from axlib.methods import approx_eval
    from axlib.methods import kernel_bench as kb

    validate.unique("shapes", validate.choices("shapes", shapes, list(kb.SHAPES)))
    validate.unique("batch_sizes", validate.integers("batch_sizes", batch_sizes, lo=1, hi=4096))
    validate.integer("repeats", repeats, lo=1, hi=100)
    for name in approx_eval.check_multipliers("lowrank_tables", lowrank_tables, allow_empty=True):
        try:
            kb.lowrank_factors([name])
        except ValueError as exc:
            raise ParameterError(f"parameter lowrank_tables: {exc}; allowed: unsigned tables with an exact "
                                 f"factorisation, e.g. {list(kb.LOWRANK_TABLES)}") from None
    validate.integer("seed", seed, lo=0)
    _profile(profile)


# --------------------------------------------------------------------------- delaparra2021, ponzina2022


@_register("delaparra2021/tab01")
def _delaparra_tab01(*, orders, seed, profile):
    from axlib.multipliers import smapprox as sa

    validate.unique("orders", validate.choices("orders", orders, list(sa.ORDERS)))
    validate.integer("seed", seed, lo=0)
    _profile(profile)


def _delaparra_nets(name: str, nets, allowed) -> list[str]:
    nets = validate.unique(name, validate.nonempty(name, nets, f"network of {list(allowed)}"))
    for n in nets:
        validate.choice(name, n, list(allowed))
    return nets


@_register("delaparra2021/tab03")
def _delaparra_tab03(*, net, multipliers, p, n_calib, n_ks, n_fig4, seed, zoo, profile):
    from axlib.methods import errstats

    errstats.validate_params(net, multipliers, p, n_calib, seed, n_ks, n_fig4)
    _zoo(zoo)
    _profile(profile)


@_register("delaparra2021/tab04")
def _delaparra_tab04(*, nets, mac_nets, n_test, n_calib, seed, zoo, profile):
    from axlib.methods import retrain

    _delaparra_nets("nets", nets, [m for m in retrain.RETRAIN_MODELS if m != "resnet18"])
    _delaparra_nets("mac_nets", mac_nets, retrain.RETRAIN_MODELS)
    if n_test is not None:
        validate.integer("n_test", n_test, lo=1, hi=10000)
    validate.integer("n_calib", n_calib, lo=1, hi=50000)
    validate.integer("seed", seed, lo=0)
    _zoo(zoo)
    _profile(profile)


@_register("delaparra2021/tab05")
def _delaparra_tab05(*, nets, multiplier, paths, batch_size, n_batches, warmup, p, seed, profile):
    from axlib.kernels import dispatch
    from axlib.methods import retrain
    from axlib.methods.approx_eval import check_multipliers

    _delaparra_nets("nets", nets, retrain.RETRAIN_MODELS)
    check_multipliers("multiplier", [multiplier])
    validate.unique("paths", validate.choices("paths", validate.nonempty("paths", paths, "kernel path"),
                                              list(dispatch.PATHS)))
    validate.integer("batch_size", batch_size, lo=1, hi=4096)
    validate.integer("n_batches", n_batches, lo=1, hi=100000)
    validate.integer("warmup", warmup, lo=0, hi=1000)
    validate.integer("p", p, lo=1, hi=100000)
    validate.integer("seed", seed, lo=0)
    _profile(profile)


def _retrain_common(nets, multipliers, methods, n_train, epochs, lr, batch_size, p, n_test, n_calib, seed, zoo,
                    profile, evaluate_with=(), allowed_nets=None) -> None:
    """The retraining pages (Figs. 6-9, Table 7): every (net, multiplier, method) point checked."""
    from axlib.methods import retrain
    from axlib.methods.approx_eval import check_multipliers

    nets = _delaparra_nets("nets", nets, allowed_nets or [m for m in retrain.RETRAIN_MODELS if m != "resnet18"])
    mults = validate.unique("multipliers", check_multipliers("multipliers", multipliers))
    methods = retrain.check_methods("methods", methods)
    for m in methods:
        retrain.validate_point(nets[0], mults[0], m, n_train, epochs, lr, batch_size, p, n_test, n_calib, seed,
                               evaluate_with)
    _zoo(zoo)
    _profile(profile)


@_register("delaparra2021/fig06")
@_register("delaparra2021/fig07")
def _delaparra_fig06_fig07(*, nets, multipliers, methods, n_train, epochs, lr, batch_size, p, n_test, n_calib, seed,
                           zoo, profile):
    _retrain_common(nets, multipliers, methods, n_train, epochs, lr, batch_size, p, n_test, n_calib, seed, zoo,
                    profile)


@_register("delaparra2021/tab07")
def _delaparra_tab07(*, nets, multipliers, method, n_train, epochs, lr, batch_size, p, n_test, n_calib, seed, zoo,
                     profile):
    from axlib.methods import retrain

    validate.choice("method", method, [m for m in retrain.METHODS if m != "none"])
    _retrain_common(nets, multipliers, ["none", method], n_train, epochs, lr, batch_size, p, n_test, n_calib, seed,
                    zoo, profile, evaluate_with=[retrain.EXACT_8BIT, *multipliers])


@_register("delaparra2021/fig08")
def _delaparra_fig08(*, multipliers, methods, n_train, epochs, lr, batch_size, p, n_test, n_calib, seed, profile):
    _retrain_common(["resnet18"], multipliers, methods, n_train, epochs, lr, batch_size, p, n_test, n_calib, seed, {},
                    profile, allowed_nets=["resnet18"])


@_register("ponzina2022/tab01")
def _ponzina_tab01(*, eight_bit_operand, seed, profile):
    validate.choice("eight_bit_operand", eight_bit_operand, ["a", "b"])
    validate.integer("seed", seed, lo=0)
    _profile(profile)


def _ponzina_flow(nets, zoo, n_select, n_report, n_calib, dataset, seed, profile, max_drop_pp=5.0, unit="Mul8VH",
                  ensembles=None, allowed=None):
    from axlib.methods import ensembles_flow as flow

    flow.check_nets("nets", nets, allowed or flow.NETS)
    flow.check_common(nets, n_select, n_report, n_calib, seed, dataset, max_drop_pp, unit)
    if ensembles is not None:
        flow.check_ensembles("ensembles", ensembles, nets)
    flow.check_zoo("zoo", zoo, nets)
    _profile(profile)


@_register("ponzina2022/fig02")
def _ponzina_fig02(*, nets, ensembles, zoo, max_drop_pp, n_select, n_report, n_calib, dataset, seed, profile):
    from axlib.models.ensemble import ENSEMBLE_BASES

    _ponzina_flow(nets, zoo, n_select, n_report, n_calib, dataset, seed, profile, max_drop_pp,
                  ensembles=ensembles, allowed=ENSEMBLE_BASES)


@_register("ponzina2022/fig03")
def _ponzina_fig03(*, nets, zoo, unit, compare_naive, n_select, n_calib, dataset, seed, profile):
    validate.boolean("compare_naive", compare_naive)
    _ponzina_flow(nets, zoo, n_select, 1, n_calib, dataset, seed, profile, unit=unit)


@_register("ponzina2022/fig04")
def _ponzina_fig04(*, nets, ensembles, zoo, unit, max_drop_pp, skip_violations, n_select, n_report, n_calib, dataset,
                   seed, profile):
    from axlib.models.ensemble import ENSEMBLE_BASES

    validate.boolean("skip_violations", skip_violations)
    _ponzina_flow(nets, zoo, n_select, n_report, n_calib, dataset, seed, profile, max_drop_pp, unit,
                  ensembles=ensembles, allowed=ENSEMBLE_BASES)


@_register("ponzina2022/fig05")
def _ponzina_fig05(*, nets, ensembles, zoo, unit, max_drop_pp, n_select, n_report, n_calib, dataset, seed, profile):
    _ponzina_flow(nets, zoo, n_select, n_report, n_calib, dataset, seed, profile, max_drop_pp, unit,
                  ensembles=ensembles)


@_register("ponzina2022/fig06")
def _ponzina_fig06(*, seed, profile):
    validate.integer("seed", seed, lo=0)
    _profile(profile)


# --------------------------------------------------------------------------- hanif2018


def _hanif_common(model_names, n_calib, n_test, seed, zoo, profile) -> list[str]:
    from axlib.methods import resilience as res

    names = res.validate_models(model_names, n_calib, n_test, seed)
    _zoo(zoo)
    _profile(profile)
    return names


@_register("hanif2018/fig04")
def _hanif_fig04(*, model, layer, power_dbw, noise_seed, n_images, n_ks, bins, n_calib, n_test, seed, zoo, profile):
    validate.choice("model", model, list(_models()))
    _hanif_common([model], n_calib, n_test, seed, zoo, profile)
    validate.choice("layer", layer, conv_layers(model))
    validate.number("power_dbw", power_dbw, lo=-100, hi=100)
    validate.integer("noise_seed", noise_seed, lo=0)
    validate.integer("n_images", n_images, lo=1, hi=n_calib)
    validate.integer("n_ks", n_ks, lo=10)
    validate.integer("bins", bins, lo=5, hi=10000)


def _models():
    from axlib import models

    return models.MODELS


@_register("hanif2018/fig05")
def _hanif_fig05(*, models, layers, level_unit, levels, noise_seeds, n_calib, n_test, seed, zoo, profile):
    from axlib.methods import resilience as res

    names = _hanif_common(models, n_calib, n_test, seed, zoo, profile)
    _per_model("layers", layers, names, conv_layers, "conv layers")
    res.validate_levels(levels, level_unit, noise_seeds)


@_register("hanif2018/fig06")
def _hanif_fig06(*, models, layers, level_unit, level, biases, noise_seeds, n_calib, n_test, seed, zoo, profile):
    from axlib.methods import resilience as res

    names = _hanif_common(models, n_calib, n_test, seed, zoo, profile)
    _per_model("layers", layers, names, conv_layers, "conv layers")
    validate.number("level", level, lo=-100.0, hi=200.0)
    res.validate_levels([level], level_unit, noise_seeds)
    values = validate.unique("biases", validate.numbers("biases", biases, lo=-100, hi=100))
    if 0.0 not in values:
        raise ParameterError(f"parameter biases={biases!r} must include 0 (the zero-mean reference)")


@_register("hanif2018/fig07")
def _hanif_fig07(*, model, producer, consumer, channels, bins, n_calib, n_test, seed, zoo, profile):
    from torch import nn

    from axlib.methods import significance as sig

    validate.choice("model", model, list(_models()))
    _hanif_common([model], n_calib, n_test, seed, zoo, profile)
    net = network(model)
    named = dict(net.named_modules())
    validate.choice("producer", producer, conv_layers(model))
    readers = []
    for name, mod in named.items():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            try:
                sig._layers(net, producer, name)
            except (ValueError, ParameterError):
                continue
            readers.append(name)
    validate.choice("consumer", consumer, readers)
    validate.integer("bins", bins, lo=5, hi=10000)
    if channels is not None:
        n = named[producer].out_channels
        values = validate.integers("channels", channels, lo=0, hi=n - 1)
        validate.unique("channels", values)


@_register("hanif2018/fig10")
def _hanif_fig10(*, models, producers, rankings, fractions, n_calib, n_test, seed, zoo, profile):
    from axlib.methods import resilience as res

    names = _hanif_common(models, n_calib, n_test, seed, zoo, profile)
    _per_model("producers", producers, names, lambda m: [p for p, _ in res.prunable_pairs(network(m))],
               "prunable conv layers")
    validate.unique("rankings", validate.choices("rankings", rankings, res.RANKINGS))
    values = validate.numbers("fractions", fractions, lo=0.0, hi=1.0)
    if len(set(values)) < 2:
        raise ParameterError(f"parameter fractions={fractions!r} needs at least two distinct values in [0, 1] "
                             "to draw a curve")


# --------------------------------------------------------------------------- moons2016


@_register("moons2016/fig01a")
def _moons_fig01a(*, n, ks, n_stream, seed, profile):
    n = validate.integer("n", n, lo=2, hi=16)
    validate.unique("ks", validate.integers("ks", ks, lo=1, hi=n))
    validate.integer("n_stream", n_stream, lo=2)
    validate.integer("seed", seed, lo=0)
    _profile(profile)


@_register("moons2016/fig01b")
def _moons_fig01b(*, bits, modes, rmse_target, profile):
    validate.unique("bits", validate.integers("bits", bits, lo=1, hi=16))
    validate.unique("modes", validate.choices("modes", modes, ["round", "truncate"]))
    validate.number("rmse_target", rmse_target, lo=1e-6, hi=0.999)
    _profile(profile)


@_register("moons2016/fig02")
def _moons_fig02(*, models, modes, bits, n_test, n_calib, seed, zoo, profile):
    from axlib.methods import precision

    precision.validate_fig02(models, bits, modes, n_test, n_calib, seed)
    _zoo(zoo)
    _profile(profile)


@_register("moons2016/fig03")
def _moons_fig03(*, models, hist_model, late_depth, bins, n_calib, seed, zoo, profile):
    from axlib.methods import precision

    validate.unique("models", validate.choices("models", models, precision.SEARCH_MODELS))
    validate.choice("hist_model", hist_model, models)
    validate.number("late_depth", late_depth, lo=1e-3, hi=1.0)
    validate.integer("bins", bins, lo=5, hi=1001)
    validate.integer("n_calib", n_calib, lo=1, hi=50000)
    validate.integer("seed", seed, lo=0)
    _zoo(zoo)
    _profile(profile)


def _moons_search(models, bits, min_bits, n_search, n_heldout, n_calib, seed, zoo, profile, targets=None,
                  n_energy=None, mult_share=None) -> None:
    from axlib import energy
    from axlib.methods import precision

    precision.validate_search(models, n_search, n_heldout, n_calib, seed, min_bits=min_bits, targets=targets,
                              n_energy=n_energy)
    validate.unique("bits", validate.integers("bits", bits, 1, 32))
    if mult_share is not None:
        energy.validate_mult_share(mult_share)
    _zoo(zoo)
    _profile(profile)


def _uniform_slack(uniform_slack, n_search) -> None:
    hi = n_search if isinstance(n_search, int) and not isinstance(n_search, bool) and n_search >= 0 else None
    validate.integer("uniform_slack", uniform_slack, lo=0, hi=hi)


@_register("moons2016/fig04")
def _moons_fig04(*, models, target, uniform_target, uniform_slack, bits, min_bits, n_search, n_heldout, n_calib,
                 seed, zoo, profile):
    validate.number("target", target, lo=0.01, hi=1.0)
    validate.number("uniform_target", uniform_target, lo=0.01, hi=1.0)
    _uniform_slack(uniform_slack, n_search)
    _moons_search(models, bits, min_bits, n_search, n_heldout, n_calib, seed, zoo, profile, [target, uniform_target])


@_register("moons2016/fig05")
def _moons_fig05(*, models, bits, n_search, n_heldout, n_energy, n_calib, seed, zoo, mult_share, profile):
    validate.integer("n_energy", n_energy, lo=1, hi=9999)
    _moons_search(models, bits, 1, n_search, n_heldout, n_calib, seed, zoo, profile, n_energy=n_energy,
                  mult_share=mult_share)


@_register("moons2016/fig06")
def _moons_fig06(*, models, targets, uniform_target, uniform_slack, bits, min_bits, n_search, n_heldout, n_energy,
                 n_calib, seed, zoo, mult_share, multiplier_law, profile):
    from axlib import energy

    values = validate.unique("targets", validate.numbers("targets", targets, lo=0.01, hi=1.0))
    validate.number("uniform_target", uniform_target, lo=0.01, hi=1.0)
    _uniform_slack(uniform_slack, n_search)
    energy.validate_law(multiplier_law)
    validate.integer("n_energy", n_energy, lo=1, hi=9999)
    _moons_search(models, bits, min_bits, n_search, n_heldout, n_calib, seed, zoo, profile, values + [uniform_target],
                  n_energy, mult_share)


@_register("moons2016/fig07")
def _moons_fig07(*, models, target, uniform_target, uniform_slack, bits, min_bits, n_search, n_heldout, n_energy,
                 n_calib, seed, zoo, mult_share, multiplier_law, profile):
    from axlib import energy

    validate.number("target", target, lo=0.01, hi=1.0)
    validate.number("uniform_target", uniform_target, lo=0.01, hi=1.0)
    _uniform_slack(uniform_slack, n_search)
    energy.validate_law(multiplier_law)
    validate.integer("n_energy", n_energy, lo=1, hi=9999)
    _moons_search(models, bits, min_bits, n_search, n_heldout, n_calib, seed, zoo, profile, [target, uniform_target],
                  n_energy, mult_share)

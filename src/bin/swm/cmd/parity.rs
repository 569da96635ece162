//! `swm parity`: swm against fixtures exported from the official Python package. A failed comparison prints
//! the table and exits 1.

use std::collections::BTreeMap;
use std::process::ExitCode;

use candle_core::Device;

use swm::device;
use swm::tools::parity::{self, FixturePaths, ParityReport, PlannerCosts};
use swm::tools::ToolError;

use crate::cli::{existing, CostSource, DecisionParityArgs, ModelParityArgs, ParityFamily, PlannerParityArgs};
use crate::error::CliError;

/// A family's model parity check (`parity::lewm`, `parity::tdmpc2`).
type ModelCheck = fn(&FixturePaths, &BTreeMap<String, f64>, &Device) -> Result<ParityReport, ToolError>;

/// Runs one parity check.
pub fn run(family: ParityFamily) -> Result<ExitCode, CliError> {
    match family {
        ParityFamily::Lewm(args) => model(args, parity::lewm_tolerances(), parity::lewm),
        ParityFamily::Tdmpc2(args) => model(args, parity::tdmpc2_tolerances(), parity::tdmpc2),
        ParityFamily::Planner(args) => planner(args),
        ParityFamily::Decision(args) => decision(args),
        ParityFamily::Train(args) => {
            if args.model.weights.is_some() || args.model.config.is_some() {
                return Err(CliError::usage(
                    "swm parity train: the fixture's own model is trained (no --weights, --config)",
                ));
            }
            let (encoder_grad, update) = (args.encoder_grad.into(), args.update.into());
            model_with(args.model, parity::train_tolerances(), |paths, tolerances, device| {
                parity::train(&paths.dir, tolerances, encoder_grad, update, device)
            })
        }
        ParityFamily::Media(args) => {
            existing(&args.jpeg, "--jpeg")?;
            let jpeg = args.jpeg;
            model_with(args.model, parity::media_tolerances(), |paths, tolerances, device| {
                parity::media(paths, &jpeg, tolerances, device)
            })
        }
    }
}

/// The exit code of a check that ran.
fn verdict(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `check` with the fixture paths and the tolerances (defaults + `--tol` overrides), prints the table and
/// writes the JSON report.
fn model(args: ModelParityArgs, tolerances: BTreeMap<String, f64>, check: ModelCheck) -> Result<ExitCode, CliError> {
    model_with(args, tolerances, check)
}

/// [`model`] with any check (the media check also takes the JPEG).
fn model_with(
    args: ModelParityArgs,
    mut tolerances: BTreeMap<String, f64>,
    check: impl FnOnce(&FixturePaths, &BTreeMap<String, f64>, &Device) -> Result<ParityReport, ToolError>,
) -> Result<ExitCode, CliError> {
    parity::apply_overrides(&mut tolerances, &args.tolerances).map_err(|e| CliError::usage(format!("--tol: {e}")))?;
    existing(&args.fixture, "--fixture")?;
    for (path, flag) in [(&args.weights, "--weights"), (&args.config, "--config")] {
        if let Some(path) = path {
            existing(path, flag)?;
        }
    }
    args.report.check()?;
    let device = device::cuda(args.device.gpu)?;
    let paths = FixturePaths { dir: args.fixture, weights: args.weights, config: args.config };
    let report = check(&paths, &tolerances, &device)?;
    out!("{}", report.table());
    args.report.write(&report)?;
    Ok(verdict(report.passed()))
}

/// Replays each solver's recorded run under the chosen costs.
fn planner(args: PlannerParityArgs) -> Result<ExitCode, CliError> {
    existing(&args.fixture, "--fixture")?;
    let costs = match args.costs {
        CostSource::Recorded => vec![PlannerCosts::Recorded],
        CostSource::Model => vec![PlannerCosts::Model],
        CostSource::Both => vec![PlannerCosts::Recorded, PlannerCosts::Model],
    };
    let device = device::cuda(args.device.gpu)?;
    let paths = FixturePaths { dir: args.fixture, weights: None, config: None };
    let mut passed = true;
    for solver in &args.solvers {
        for &source in &costs {
            let report = parity::planner(&paths, solver.name(), source, args.tol, args.cost_tol, &device)?;
            out!("{}", report.table());
            passed &= report.passed();
        }
    }
    Ok(verdict(passed))
}

/// swm's CEM against the official CEM's decisions.
fn decision(args: DecisionParityArgs) -> Result<ExitCode, CliError> {
    existing(&args.dir, "--dir")?;
    args.report.check()?;
    let device = device::cuda(args.device.gpu)?;
    let report = parity::decision(&args.dir, args.rel_tol, &device)?;
    out!("{}", report.table());
    args.report.write(&report)?;
    Ok(verdict(report.passed()))
}

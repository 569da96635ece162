//! TD-MPC2 config parsing and validation: defaults, the wrapped form, encoding order, field-named errors.

use std::path::Path;

use swm::config::ConfigError;
use swm::models::tdmpc2::Config;

fn cfg(wm_extra: &str, top_extra: &str) -> String {
    format!(
        r#"{{"action_dim": 6, "extra_dims": {{"action": 6, "state": 24, "goal": 4}}, "image_size": 64{top_extra},
           "wm": {{"encoding": {{"state": 512}}, "enc_dim": 256, "mlp_dim": 512, "num_q": 5, "num_bins": 101,
                   "vmin": -10, "vmax": 10, "tau": 0.01{wm_extra}}}}}"#
    )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_json_str(text, Path::new("config.json"))
}

fn invalid_field(text: &str) -> String {
    match parse(text) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn bare_and_wrapped_configs_parse_with_upstream_defaults() {
    let bare = parse(&cfg("", "")).unwrap();
    assert_eq!((bare.action_dim, bare.latent_dim(), bare.num_pi_trajs), (6, 512, 1));
    assert_eq!((bare.wm.simnorm_dim, bare.wm.discount, bare.wm.uncertainty_penalty), (8, 0.99, 0.5));
    let wrapped = format!(
        r#"{{"_target_": "stable_worldmodel.wm.tdmpc2.TDMPC2", "_recursive_": false, "cfg": {}}}"#,
        cfg("", "")
    );
    assert_eq!(parse(&wrapped).unwrap().latent_dim(), 512);
}

#[test]
fn encoding_keeps_document_order_and_pixels_size_the_cnn() {
    let text = cfg("", "").replace(r#"{"state": 512}"#, r#"{"state": 64, "goal": 32, "pixels": 32}"#);
    let c = parse(&text).unwrap();
    let names: Vec<&str> = c.wm.encoding.extras().map(|(k, _)| k).collect();
    assert_eq!(names, ["state", "goal"]);
    assert_eq!((c.wm.encoding.pixels(), c.cnn_side(), c.latent_dim()), (Some(32), Some(4), 128));
    // Pixels (256) + state (128), mlp 384, 5 Qs: the 151 keys of the spec's example (with target Qs and scale).
    let text = cfg("", "")
        .replace(r#"{"state": 512}"#, r#"{"pixels": 256, "state": 128}"#)
        .replace(r#""mlp_dim": 512"#, r#""mlp_dim": 384"#);
    let table = parse(&text).unwrap().parameter_table().unwrap();
    assert_eq!(table.len(), 151);
    assert!(table.iter().any(|p| p.name == "pixel_encoder.weight" && p.shape == [256, 512]));
    assert!(table.iter().any(|p| p.name == "dynamics.0.weight" && p.shape == [384, 390]));
}

#[test]
fn contradictory_configs_name_the_field() {
    assert_eq!(invalid_field(&cfg("", "").replace(r#""num_q": 5"#, r#""num_q": 1"#)), "wm.num_q");
    assert_eq!(invalid_field(&cfg("", "").replace(r#"{"state": 512}"#, r#"{"state": 500}"#)), "wm.encoding");
    assert_eq!(invalid_field(&cfg("", "").replace(r#"{"state": 512}"#, r#"{"joints": 512}"#)), "extra_dims.joints");
    assert_eq!(invalid_field(&cfg("", "").replace(r#"{"state": 512}"#, r#"{}"#)), "wm.encoding");
    assert_eq!(invalid_field(&cfg("", "").replace(r#""vmin": -10"#, r#""vmin": 10"#)), "wm.num_bins");
    let no_image = cfg("", "").replace(r#", "image_size": 64"#, "").replace(r#"{"state": 512}"#, r#"{"pixels": 64}"#);
    assert_eq!(invalid_field(&no_image), "image_size");
    match parse(&cfg("", "").replace(r#""mlp_dim": 512"#, r#""mlp_dim": "wide""#)) {
        Err(ConfigError::Parse { field, .. }) => assert_eq!(field, "wm.mlp_dim"),
        other => panic!("{other:?}"),
    }
}

//! Compiles the Slint UI. Debug info is always emitted so that the headless
//! UI tests (`i-slint-backend-testing`) can find elements by id.
fn main() {
    let config = slint_build::CompilerConfiguration::new()
        .with_style("fluent-dark".into())
        .with_debug_info(true);
    slint_build::compile_with_config("ui/app.slint", config).expect("Slint UI compiles");
}

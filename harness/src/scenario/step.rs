//! One entry of a scenario's `steps` list: a bare name (`"link-up"`) or a
//! one-key table (`{ wait = "500ms" }`).

use super::{parse_duration, LinkState, Step};

const HELP: &str = "steps are \"boot\", \"link-up\", \"show\", { show = \"LABEL\" }, \
                    \"reload-driver\", { device-link = \"down\" | \"up\" }, { wait = \"500ms\" }";

/// Turns one TOML value of the `steps` array into a step.
pub(super) fn parse_step(value: &toml::Value) -> Result<Step, String> {
    match value {
        toml::Value::String(name) => match name.as_str() {
            "boot" => Ok(Step::Boot),
            "link-up" => Ok(Step::LinkUp),
            "show" => Ok(Step::Show { label: None }),
            "reload-driver" => Ok(Step::ReloadDriver),
            "device-link" | "wait" => Err(format!(
                "step `{name}` needs a value: write {{ {name} = {} }}",
                if name == "wait" {
                    "\"500ms\""
                } else {
                    "\"down\""
                }
            )),
            _ => Err(format!("unknown step `{name}`; {HELP}")),
        },
        toml::Value::Table(table) => {
            let mut entries = table.iter();
            let (Some((key, value)), None) = (entries.next(), entries.next()) else {
                return Err(format!(
                    "a step table has exactly one key, this one has {}; {HELP}",
                    table.len()
                ));
            };
            let text = value
                .as_str()
                .ok_or_else(|| format!("the value of step `{key}` must be a string"))?;
            match key.as_str() {
                "show" => {
                    super::raw::check_name("show label", text)?;
                    Ok(Step::Show {
                        label: Some(text.to_string()),
                    })
                }
                "device-link" => match text {
                    "up" => Ok(Step::DeviceLink(LinkState::Up)),
                    "down" => Ok(Step::DeviceLink(LinkState::Down)),
                    _ => Err(format!("device-link is \"up\" or \"down\", not `{text}`")),
                },
                "wait" => parse_duration(text).map(Step::Wait),
                "boot" | "link-up" | "reload-driver" => {
                    Err(format!("step `{key}` takes no value: write \"{key}\""))
                }
                _ => Err(format!("unknown step `{key}`; {HELP}")),
            }
        }
        other => Err(format!(
            "a step is a string or a one-key table, not a value of type {}; {HELP}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn step(toml_value: &str) -> Result<Step, String> {
        let v: toml::Table = toml::from_str(&format!("x = {toml_value}")).unwrap();
        parse_step(&v["x"])
    }

    #[test]
    fn every_form() {
        assert_eq!(step("\"boot\""), Ok(Step::Boot));
        assert_eq!(step("\"link-up\""), Ok(Step::LinkUp));
        assert_eq!(step("\"show\""), Ok(Step::Show { label: None }));
        assert_eq!(
            step("{ show = \"after\" }"),
            Ok(Step::Show {
                label: Some("after".into())
            })
        );
        assert_eq!(step("\"reload-driver\""), Ok(Step::ReloadDriver));
        assert_eq!(
            step("{ device-link = \"down\" }"),
            Ok(Step::DeviceLink(LinkState::Down))
        );
        assert_eq!(
            step("{ wait = \"250ms\" }"),
            Ok(Step::Wait(Duration::from_millis(250)))
        );
    }

    #[test]
    fn errors_say_what_to_write() {
        assert!(step("\"reboot\"")
            .unwrap_err()
            .contains("unknown step `reboot`"));
        assert!(step("\"wait\"")
            .unwrap_err()
            .contains("{ wait = \"500ms\" }"));
        assert!(step("{ boot = \"x\" }")
            .unwrap_err()
            .contains("takes no value"));
        assert!(step("{ device-link = \"sideways\" }")
            .unwrap_err()
            .contains("\"up\" or \"down\""));
        assert!(step("{ wait = \"5\" }").unwrap_err().contains("no unit"));
        assert!(step("{ wait = 5 }")
            .unwrap_err()
            .contains("must be a string"));
        assert!(step("{ wait = \"1s\", show = \"a\" }")
            .unwrap_err()
            .contains("exactly one key"));
        assert!(step("{}").unwrap_err().contains("exactly one key"));
        assert!(step("3").unwrap_err().contains("type integer"));
        assert!(step("{ show = \"has space\" }").is_err());
    }
}

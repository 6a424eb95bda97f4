//! Message templates: Jinja syntax rendered by minijinja with each contact's variables
//! (`nombre`/`name`, `sustantivo`/`noun`, `grupo`/`group`, `telefono`/`phone` and every
//! attribute). A variable a contact lacks is an error, never an empty gap: `check` lists the
//! contacts a template cannot be rendered for before anything is sent.
use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, UndefinedBehavior};

use crate::entities::contacts;

mod error;
pub mod repo;
mod routes;
pub mod service;

pub use error::TemplateError;
pub use routes::configure;

/// Longest template body, in characters (WhatsApp's text limit).
pub const MAX_BODY_CHARS: usize = 4096;
/// The work one render may do, in minijinja's fuel (an instruction is one, and every 64 bytes
/// of data made or written one more): about 3 MB, a hundred times what the longest message
/// needs. Without it a template's author could make every render of a campaign build gigabytes
/// (`{{ (1,2,3) * 30000000 }}` passes minijinja's own caps), which fuzzing found.
pub const TEMPLATE_FUEL: u64 = 50_000;

/// The longest render kept. Fuel counts a value's bytes when it is made, not when it is
/// written: a few small values written many times over (`{{ (x * 800000,) * 5000 }}`) built
/// gigabytes of output within the fuel, which fuzzing found. A message is at most 4096
/// characters, so anything past this is an error, found while writing.
pub const MAX_RENDER_BYTES: usize = 64 * 1024;

/// The render's output, refusing to grow past [`MAX_RENDER_BYTES`].
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_RENDER_BYTES {
            self.over = true;
            return Err(std::io::Error::other("render too long"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Name of the one template in a [`Compiled`]'s environment.
const NAME: &str = "message";

/// A template body parsed once: the variables it uses, and renders for any number of contacts
/// (`check` renders an audience of thousands without parsing the body again).
pub struct Compiled {
    env: Environment<'static>,
    variables: BTreeSet<String>,
}

impl Compiled {
    /// Parses `body`; the error says why it does not parse.
    pub fn new(body: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_template_owned(NAME, body.to_owned())
            .map_err(|e| e.to_string())?;
        let variables = env
            .get_template(NAME)
            .map_err(|e| e.to_string())?
            .undeclared_variables(false)
            .into_iter()
            .collect();
        Ok(Self { env, variables })
    }

    /// The variables the template uses.
    pub fn variables(&self) -> &BTreeSet<String> {
        &self.variables
    }

    /// Renders for one contact's variables.
    pub fn render(&self, vars: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = Capped {
            buf: Vec::new(),
            over: false,
        };
        let rendered = self.env.get_template(NAME).and_then(|t| {
            t.render_captured_to(minijinja::Value::from(vars.clone()), &mut out)
                .map(|_| ())
        });
        if out.over {
            return Err(format!(
                "the message would be longer than {MAX_RENDER_BYTES} bytes"
            ));
        }
        rendered.map_err(|e| e.to_string())?;
        String::from_utf8(out.buf).map_err(|e| e.to_string())
    }

    /// The variables the template uses that `vars` has no value for.
    pub fn missing(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        self.variables
            .iter()
            .filter(|v| !vars.contains_key(v.as_str()))
            .cloned()
            .collect()
    }

    /// What stops the template from rendering for `vars`: the absent variables it needs (a
    /// variable used only under `{% if x is defined %}` is not needed), or nothing when it
    /// renders.
    pub fn blocking(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let absent = self.missing(vars);
        if absent.is_empty() || self.render(vars).is_ok() {
            return Vec::new();
        }
        // One absent variable at a time, with the others filled in: those whose absence alone
        // breaks the render are the ones the contact must get.
        let culprits: Vec<String> = absent
            .iter()
            .filter(|candidate| {
                let mut filled = vars.clone();
                for other in absent.iter().filter(|o| o != candidate) {
                    filled.insert(other.clone(), "x".into());
                }
                self.render(&filled).is_err()
            })
            .cloned()
            .collect();
        if culprits.is_empty() {
            absent
        } else {
            culprits
        }
    }
}

/// A contact's variables: the seed's Spanish names, their English twins, and its attributes.
pub fn context(c: &contacts::Model) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = c
        .attributes
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    let mut put = |keys: [&str; 2], value: Option<&String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            for k in keys {
                vars.insert(k.into(), v.clone());
            }
        }
    };
    put(["nombre", "name"], c.name.as_ref());
    put(["sustantivo", "noun"], c.noun.as_ref());
    put(["grupo", "group"], c.group_name.as_ref());
    put(["telefono", "phone"], Some(&c.phone));
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_missing_and_render() {
        let body = "Hola {{ sustantivo }} {{ nombre }}, {% if ciudad is defined %}en {{ ciudad }}{% endif %} tu grupo es {{ grupo }}";
        let t = Compiled::new(body).expect("parses");
        let vars = t.variables();
        assert_eq!(
            vars.iter().map(String::as_str).collect::<Vec<_>>(),
            ["ciudad", "grupo", "nombre", "sustantivo"]
        );
        let ctx = BTreeMap::from([
            ("nombre".to_owned(), "Ana".to_owned()),
            ("sustantivo".to_owned(), "Sra.".to_owned()),
            ("grupo".to_owned(), "VIP".to_owned()),
            ("ciudad".to_owned(), "Madrid".to_owned()),
        ]);
        assert!(t.missing(&ctx).is_empty());
        assert_eq!(
            t.render(&ctx).expect("renders"),
            "Hola Sra. Ana, en Madrid tu grupo es VIP"
        );
        let mut partial = ctx.clone();
        partial.remove("grupo");
        assert_eq!(t.missing(&partial), ["grupo"]);
        assert!(
            t.render(&partial).is_err(),
            "strict: a missing variable is an error"
        );
        assert_eq!(t.blocking(&partial), ["grupo"]);
        let mut no_city = ctx.clone();
        no_city.remove("ciudad");
        assert!(
            t.blocking(&no_city).is_empty(),
            "an optional variable is not needed"
        );
        assert_eq!(
            t.render(&no_city).expect("renders"),
            "Hola Sra. Ana,  tu grupo es VIP"
        );
        assert!(Compiled::new("Hola {{ nombre").is_err());
    }

    /// A render that would build huge values or loop for long runs out of fuel, at once and
    /// with little memory; ordinary messages never come near it.
    #[test]
    fn a_render_cannot_build_gigabytes() {
        let vars = BTreeMap::from([("nombre".to_owned(), "Ana".to_owned())]);
        for body in [
            "{{ (1,2,3) * 30000000 }}",
            "{{ 'x' * 90000000 }}",
            "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
            "{{ nombre | indent(100000000) }}",
            // Small values written many times: fuel counts them once (found by fuzzing).
            "{{ (698, 4000, 'x' * 800000) * 5000 }}",
            "{{ ('x' * 50000,) * 1000 }}",
        ] {
            let started = std::time::Instant::now();
            let t = Compiled::new(body).expect("parses");
            assert!(t.render(&vars).is_err(), "{body} rendered");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "{body}"
            );
        }
        let long = format!("Hola {{{{ nombre }}}}, {}", "texto ".repeat(680));
        assert!(Compiled::new(&long).expect("parses").render(&vars).is_ok());
    }
}

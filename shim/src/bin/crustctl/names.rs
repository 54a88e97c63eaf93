//! Container names: Docker's rules for a given name, and made-up `adjective_noun` names.

use anyhow::bail;

/// Checks a name as Docker does: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(crate) fn check(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        || name.len() > 253
    {
        bail!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    Ok(())
}

// crust's own word lists (weather and landscape words for the first half, birds for the second).
const ADJECTIVES: &[&str] = &[
    "amber",
    "breezy",
    "calm",
    "cloudy",
    "crisp",
    "dewy",
    "dusky",
    "foggy",
    "frosty",
    "gentle",
    "golden",
    "hazy",
    "icy",
    "lucid",
    "misty",
    "mossy",
    "murky",
    "placid",
    "quiet",
    "rainy",
    "rocky",
    "rosy",
    "rustic",
    "sandy",
    "shady",
    "silent",
    "silver",
    "snowy",
    "sparkling",
    "stormy",
    "sunny",
    "swift",
    "tidal",
    "twilight",
    "vivid",
    "windy",
    "wintry",
    "woody",
];
const NOUNS: &[&str] = &[
    "albatross",
    "bittern",
    "bluejay",
    "bunting",
    "chickadee",
    "cormorant",
    "crane",
    "curlew",
    "dipper",
    "dunlin",
    "egret",
    "falcon",
    "finch",
    "flamingo",
    "gannet",
    "goldcrest",
    "grebe",
    "harrier",
    "heron",
    "hoopoe",
    "ibis",
    "kestrel",
    "kingfisher",
    "kite",
    "lapwing",
    "linnet",
    "magpie",
    "merlin",
    "nightjar",
    "oriole",
    "osprey",
    "pelican",
    "plover",
    "puffin",
    "redstart",
    "robin",
    "sandpiper",
    "skylark",
    "starling",
    "swallow",
    "swift",
    "tern",
    "thrush",
    "wagtail",
    "warbler",
    "waxwing",
    "wren",
];

/// A random `adjective_noun` that `taken` does not hold (with a number after it when every
/// pair tried is in use).
pub(crate) fn generate(taken: impl Fn(&str) -> bool) -> String {
    let pick = |list: &[&'static str]| list[rand::random::<u32>() as usize % list.len()];
    for attempt in 0..64 {
        let mut n = format!("{}_{}", pick(ADJECTIVES), pick(NOUNS));
        if attempt >= 32 {
            n = format!("{n}{}", rand::random::<u32>() % 10);
        }
        if !taken(&n) {
            return n;
        }
    }
    format!(
        "{}_{}{}",
        pick(ADJECTIVES),
        pick(NOUNS),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rules() {
        for good in ["web", "a", "db-1", "x_y.z", "Web2"] {
            check(good).unwrap();
        }
        for bad in ["", "-web", "_x", "a b", "a/b", "é"] {
            assert!(check(bad).is_err(), "{bad}");
        }
        let n = generate(|_| false);
        let (a, b) = n.split_once('_').unwrap();
        assert!(ADJECTIVES.contains(&a) && NOUNS.contains(&b), "{n}");
        check(&n).unwrap();
        // A taken name is never handed out.
        let first = generate(|_| false);
        assert_ne!(generate(|n| n == first.as_str() || n.len() < 4), first);
    }
}

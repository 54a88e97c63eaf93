//! Object ids: 64 lowercase hex characters, like containerd's, so a prefix is unambiguous enough
//! for humans and the full id is safe as a path component and a libcontainer id.

pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// True for an id crust could have generated. Anything else is refused before it reaches a path.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert!(is_valid_id(&a));
        assert_ne!(a, b);
        assert!(!is_valid_id("../etc"));
        assert!(!is_valid_id(&a[..63]));
        assert!(!is_valid_id(&a.to_uppercase()));
    }
}

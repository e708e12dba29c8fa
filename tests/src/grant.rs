//! Grants as the tests declare them, rendered into rfsd's clients file.

use std::fmt::Write as _;

/// One grant line of the clients file.
#[derive(Clone, Debug)]
pub struct Grant {
    address: String,
    volume: Option<String>,
    write_noauth: bool,
    readonly: bool,
    key_hash: Option<String>,
}

impl Grant {
    /// Returns a grant for one address (an IP, a CIDR range or `*`) that may
    /// read and list the `local` volume.
    pub fn address(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            volume: None,
            write_noauth: false,
            readonly: false,
            key_hash: None,
        }
    }

    /// Lets the client write without authenticating by key.
    pub fn write_noauth(mut self) -> Self {
        self.write_noauth = true;
        self
    }

    /// Forbids every write.
    pub fn readonly(mut self) -> Self {
        self.readonly = true;
        self
    }

    /// Names the volume, instead of the default `local`.
    pub fn volume(mut self, volume: &str) -> Self {
        self.volume = Some(volume.to_owned());
        self
    }

    /// Requires the client to present the key with this hash.
    pub fn key_hash(mut self, key_hash: &str) -> Self {
        self.key_hash = Some(key_hash.to_owned());
        self
    }

    /// Returns this grant as a `[[grant]]` table of the clients file.
    pub(crate) fn to_toml(&self) -> String {
        let mut toml = format!("[[grant]]\naddress = \"{}\"\n", self.address);
        if let Some(volume) = &self.volume {
            let _ = writeln!(toml, "volume = \"{volume}\"");
        }
        if self.write_noauth {
            toml.push_str("write_noauth = true\n");
        }
        if self.readonly {
            toml.push_str("readonly = true\n");
        }
        if let Some(key_hash) = &self.key_hash {
            let _ = writeln!(toml, "key_hash = \"{key_hash}\"");
        }

        toml
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_renders_as_a_toml_table() {
        let grant = Grant::address("127.0.0.2").write_noauth();

        let toml = grant.to_toml();

        assert_eq!(
            toml,
            "[[grant]]\naddress = \"127.0.0.2\"\nwrite_noauth = true\n"
        );
    }
}

//! What a console user or an API token may do.

crate::text_enum! {
    /// `viewer` reads; `admin` also acts (release, reject, re-evaluate, retry).
    pub enum Role ("role") {
        Viewer => "viewer",
        Admin => "admin",
    }
}

impl Default for Role {
    /// Least privilege.
    fn default() -> Self {
        Role::Viewer
    }
}

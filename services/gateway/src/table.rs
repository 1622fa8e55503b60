//! The route table: which service owns which path prefix, and who may call it. Access rules
//! are declared here, next to the routes, so one reading shows the whole public surface.

use motorpool_platform::auth::Role;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Anyone may read (GET, HEAD); other methods need a valid token.
    PublicRead,
    /// Any authenticated user.
    User,
    /// Authenticated users with one of these roles.
    Roles(&'static [Role]),
}

#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub prefix: &'static str,
    pub service: &'static str,
    pub access: Access,
}

const ADMIN: &[Role] = &[Role::Admin];

/// Longest prefix wins; a prefix matches whole path segments only.
pub const RULES: &[Rule] = &[
    Rule { prefix: "/api/auth/register", service: "identity", access: Access::Public },
    Rule { prefix: "/api/auth/login", service: "identity", access: Access::Public },
    Rule { prefix: "/api/auth/refresh", service: "identity", access: Access::Public },
    Rule { prefix: "/api/auth/logout", service: "identity", access: Access::Public },
    Rule { prefix: "/api/auth", service: "identity", access: Access::User },
    Rule { prefix: "/.well-known/jwks.json", service: "identity", access: Access::Public },
    Rule { prefix: "/api/admin/users", service: "identity", access: Access::Roles(ADMIN) },
    Rule { prefix: "/api/admin/keys", service: "identity", access: Access::Roles(ADMIN) },
    Rule { prefix: "/api/payments", service: "payments", access: Access::User },
    Rule { prefix: "/api/admin/payments", service: "payments", access: Access::Roles(ADMIN) },
    Rule { prefix: "/api/inventory", service: "inventory", access: Access::Roles(ADMIN) },
    Rule { prefix: "/api/shop", service: "shop", access: Access::User },
    // The catalog is open to everyone; carts and orders need a signed-in user.
    Rule { prefix: "/api/shop/products", service: "shop", access: Access::Public },
    Rule { prefix: "/api/shop/models", service: "shop", access: Access::Public },
    Rule { prefix: "/api/shop/categories", service: "shop", access: Access::Public },
    Rule { prefix: "/api/cart", service: "shop", access: Access::User },
    // Browsers cannot send an Authorization header when opening a WebSocket: these take the
    // token as `?access_token=` (or the header) and the shop verifies it itself.
    Rule { prefix: "/api/cart/ws", service: "shop", access: Access::Public },
    Rule { prefix: "/cart/update-product", service: "shop", access: Access::Public },
    // The showroom is open to everyone; a token, when sent, makes the saves the caller's, and
    // the configurator verifies it itself (`/mine` requires one).
    Rule { prefix: "/api/configure", service: "configurator", access: Access::Public },
    Rule { prefix: "/api/factory", service: "factory", access: Access::User },
    Rule { prefix: "/api/notifications", service: "notifications", access: Access::User },
    // A browser's EventSource cannot send an Authorization header: the stream takes the token
    // as `?access_token=` and notifications verifies it itself.
    Rule { prefix: "/api/notifications/stream", service: "notifications", access: Access::Public },
];

/// The services the gateway routes to.
pub fn services() -> Vec<&'static str> {
    let mut s: Vec<&'static str> = RULES.iter().map(|r| r.service).collect();
    s.sort_unstable();
    s.dedup();
    s
}

fn matches(prefix: &str, path: &str) -> bool {
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The rule for `path`, if any.
pub fn find(path: &str) -> Option<&'static Rule> {
    find_index(path).map(|i| &RULES[i])
}

/// The position in [`RULES`] of the rule for `path`, if any.
pub fn find_index(path: &str) -> Option<usize> {
    RULES.iter().enumerate().filter(|(_, r)| matches(r.prefix, path)).max_by_key(|(_, r)| r.prefix.len()).map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        assert_eq!(find("/api/auth/login").map(|r| r.access), Some(Access::Public));
        assert_eq!(find("/api/auth/me").map(|r| r.access), Some(Access::User));
        assert_eq!(find("/api/admin/users/42").map(|r| r.access), Some(Access::Roles(ADMIN)));
        assert!(find("/api/authx").is_none());
        assert!(find("/api/auth/loginx").is_some_and(|r| r.access == Access::User));
        assert!(find("/nowhere").is_none());
    }

    #[test]
    fn every_prefix_is_unique() {
        let mut prefixes: Vec<_> = RULES.iter().map(|r| r.prefix).collect();
        prefixes.sort_unstable();
        let n = prefixes.len();
        prefixes.dedup();
        assert_eq!(n, prefixes.len());
    }
}

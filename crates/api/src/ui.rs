//! The dashboard's frame, served by the site API itself: its static files (style sheet,
//! script, icon — compiled into the binary: no web server, no build step), the shell every
//! page uses, the sign-in page, and HTML escaping. What a page shows is the handler's
//! (`resurgo_controller::dashboard`).
//!
//! Pages are sent with a content security policy that allows only this origin's script,
//! style sheet and images: nothing inline runs, nothing is fetched from elsewhere.

use crate::server::Reply;

/// The content security policy of the dashboard's pages, unless a page sets its own (a drill
/// report, a document of its own with its style inline).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The other headers every page and static file of the dashboard is sent with.
pub const SECURITY_HEADERS: &str = "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n";

const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/app.js");
const ICON: &str = include_str!("../assets/icon.svg");

/// Static file `name` of the dashboard (404: there is none).
pub fn asset(name: &str) -> Reply {
    let (content_type, body) = match name {
        "style.css" => ("text/css; charset=utf-8", STYLE),
        "app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "icon.svg" => ("image/svg+xml", ICON),
        _ => return Reply::problem(404, format!("the dashboard has no file `{name}`")),
    };
    Reply::Page {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

/// `text` with HTML's special characters escaped, for an element's text or an attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a page's frame shows besides its body.
#[derive(Default)]
pub struct Frame<'a> {
    /// The page's title (escaped here).
    pub title: &'a str,
    /// The system's name and the site whose agent serves the page, in the header.
    pub subtitle: &'a str,
    /// The URL of the page's live part (`#panel`), fetched again as events arrive; `None`:
    /// the page does not change.
    pub refresh: Option<&'a str>,
    /// Whether a sign-out button is shown (a signed-in page).
    pub signed_in: bool,
}

/// A whole page: the frame around `body` (HTML, already escaped).
pub fn page(frame: &Frame, body: &str) -> String {
    let refresh = frame
        .refresh
        .map(|r| format!(" data-refresh=\"{}\"", escape(r)))
        .unwrap_or_default();
    let sign_out = if frame.signed_in {
        "<form method=\"post\" action=\"/ui/logout\"><button type=\"submit\">Sign out</button></form>"
    } else {
        ""
    };
    let live = if frame.refresh.is_some() {
        "<span id=\"live\" class=\"live\">connecting</span>"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title} — resurgo</title>\n<link rel=\"icon\" href=\"/ui/assets/icon.svg\" type=\"image/svg+xml\">\n<link rel=\"stylesheet\" href=\"/ui/assets/style.css\">\n<script src=\"/ui/assets/app.js\" defer></script>\n</head>\n<body{refresh}>\n<header><a class=\"brand\" href=\"/ui\">resurgo</a><span class=\"system\">{subtitle}</span>{live}{sign_out}</header>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(frame.title),
        subtitle = escape(frame.subtitle),
    )
}

/// The sign-in page, with `message` (escaped here) above the form.
pub fn login_page(status: u16, message: &str) -> Reply {
    let message = if message.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"{}\">{}</p>\n",
            if status == 200 { "note" } else { "bad" },
            escape(message)
        )
    };
    let body = format!(
        "<h1>Sign in</h1>\n{message}<form class=\"login\" method=\"post\" action=\"/ui/login\">\n<label for=\"token\">The deployment's bearer token</label>\n<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\n<button class=\"action\" type=\"submit\">Sign in</button>\n</form>\n<p class=\"note\">A browser that presents a client certificate signed by the deployment CA needs no token.</p>"
    );
    Reply::html(
        status,
        page(
            &Frame {
                title: "Sign in",
                ..Frame::default()
            },
            &body,
        ),
    )
}

/// A page with a title and one message (escaped here), and a way back to the dashboard.
pub fn message_page(status: u16, title: &str, message: &str) -> Reply {
    let class = if status < 400 { "note" } else { "bad" };
    let body = format!(
        "<h1>{}</h1>\n<p class=\"{class}\">{}</p>\n<p><a class=\"action\" href=\"/ui\">Back to the dashboard</a></p>",
        escape(title),
        escape(message)
    );
    Reply::html(
        status,
        page(
            &Frame {
                title,
                signed_in: true,
                ..Frame::default()
            },
            &body,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_elements_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn every_page_loads_only_its_own_files() {
        let html = page(
            &Frame {
                title: "t<",
                refresh: Some("/ui/panel"),
                ..Frame::default()
            },
            "<p>x</p>",
        );
        assert!(html.contains("<title>t&lt; — resurgo</title>"));
        assert!(html.contains("data-refresh=\"/ui/panel\""));
        for src in html.split("src=\"").skip(1).chain(html.split("href=\"").skip(1)) {
            assert!(src.starts_with('/'), "{src}");
        }
        assert!(matches!(asset("app.js"), Reply::Page { status: 200, .. }));
        assert!(matches!(asset("../Cargo.toml"), Reply::Json { status: 404, .. }));
    }
}

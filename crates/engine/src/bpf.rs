//! Stealth (issue 8): compile the accept rules that remain for one listening socket
//! into a classic BPF socket filter on the peer's address and port.

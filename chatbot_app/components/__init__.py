"""UI pieces, one file each: small functions that return rx.Component."""

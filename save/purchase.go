package save

// SKUView is a catalog entry as shown to clients: what it costs and grants.
type SKUView struct {
	SKU    string           `json:"sku"`
	Name   string           `json:"name,omitempty"`
	Price  map[string]int64 `json:"price"`
	Grants []Op             `json:"grants"`
}

// Catalog lists the SKUs sorted by id, with copies of their prices and
// grants so callers cannot alter the config.
func (c *Config) Catalog() []SKUView {
	out := make([]SKUView, 0, len(c.SKUs))
	for _, id := range sortedKeys(c.SKUs) {
		sku := c.SKUs[id]
		out = append(out, SKUView{
			SKU:    id,
			Name:   sku.Name,
			Price:  cloneMap(sku.Price),
			Grants: append([]Op(nil), sku.Grants...),
		})
	}
	return out
}

// purchase charges a SKU's price and applies its grants, both taken from the
// catalog: a client names only the SKU. Prices are charged in currency order;
// a price the player cannot pay is INSUFFICIENT_FUNDS, a grant over a cap
// LIMIT_EXCEEDED, and either undoes the whole mutation.
func (a *applier) purchase(id, path string) error {
	sku, ok := a.c.SKUs[id]
	if !ok {
		return fieldError(CodeNotFound, path+".sku", "no SKU %q in the catalog", id).WithDetail("sku", id)
	}
	for _, cur := range sortedKeys(sku.Price) {
		price := sku.Price[cur]
		if err := addBounded(a.st.Currencies, a.c.Currencies[cur], cur, -price, "currency", path); err != nil {
			if e, ok := AsError(err); ok {
				e.WithDetail("sku", id).WithDetail("price", price)
			}
			return err
		}
	}
	for _, g := range sku.Grants {
		if err := a.apply(g, path); err != nil {
			if e, ok := AsError(err); ok {
				e.WithDetail("sku", id)
			}
			return err
		}
	}
	return nil
}

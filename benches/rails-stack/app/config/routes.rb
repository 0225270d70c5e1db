Rails.application.routes.draw do
  get "/up" => "health#show"
  root "members#index"
end

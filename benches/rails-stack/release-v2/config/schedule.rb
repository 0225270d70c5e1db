every 1.hour do
  runner "Member.count"
end
